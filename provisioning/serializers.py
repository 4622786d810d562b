"""Validation of the provisioning requests.

Strict on purpose: a serviceId is part of derived names and secrets, so a
number where a string belongs, surrounding spaces or an unknown capability is
refused rather than coerced into something the caller did not mean.
"""

from django.core.validators import RegexValidator
from rest_framework import serializers

from .models import Resource

ID_PATTERN = r"^[A-Za-z0-9._-]+$"
ID_MAX_LENGTH = 128


class IdentifierField(serializers.CharField):
    """1-128 characters of [A-Za-z0-9._-], and only a JSON string."""

    default_error_messages = {
        "not_a_string": "must be a string",
        "bad_characters": "may contain only A-Z, a-z, 0-9, '.', '_' and '-'",
    }

    def __init__(self, **kwargs):
        super().__init__(
            max_length=ID_MAX_LENGTH,
            trim_whitespace=False,
            validators=[
                RegexValidator(
                    ID_PATTERN, message=self.default_error_messages["bad_characters"]
                )
            ],
            **kwargs,
        )

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class ProvisionRequest(serializers.Serializer):
    serviceId = IdentifierField()
    serviceName = IdentifierField()
    capabilities = serializers.ListField(
        child=serializers.ChoiceField(choices=Resource.Capability.values),
        allow_empty=False,
    )

    def validate_capabilities(self, value):
        # Order-insensitive and without duplicates, in the engines' order.
        return [c for c in Resource.Capability.values if c in value]


class DeprovisionRequest(serializers.Serializer):
    serviceId = IdentifierField()
