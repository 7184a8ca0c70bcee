from django.contrib import admin

admin.site.site_header = "LM Studio alias proxy"
admin.site.site_title = "Alias proxy admin"
admin.site.index_title = "Aliases and request history"
