"""supervisord event listener that copies every process's output to stdout.

supervisord writes each process's output to its own file under <data>/log/;
this listener repeats it, prefixed with the process name, on supervisord's
stdout, so `make run` shows the whole stack in the foreground.
"""

import sys


def main():
    out, err = sys.stdout, sys.stderr
    while True:
        out.write("READY\n")
        out.flush()
        header = dict(item.split(":", 1) for item in sys.stdin.readline().split())
        payload = sys.stdin.read(int(header["len"]))
        event_header, _, data = payload.partition("\n")
        fields = dict(item.split(":", 1) for item in event_header.split())
        name = fields.get("processname", "?")
        for line in data.splitlines():
            err.write(f"{name:<13}| {line}\n")
        err.flush()
        out.write("RESULT 2\nOK")
        out.flush()


if __name__ == "__main__":
    main()
