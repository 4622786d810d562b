"""The admin site's frame: titles, and where "View site" leads."""

from django.contrib import admin

admin.site.site_header = "corestore"
admin.site.site_title = "corestore admin"
admin.site.index_title = "Node storage"
# The node has no site of its own; its API documentation is the closest.
admin.site.site_url = "/docs"
