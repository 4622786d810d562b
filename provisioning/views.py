"""The provisioning endpoints of the control API (bearer token, JSON errors)."""

from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import Service
from .provision import (
    deprovision_service,
    describe_service,
    load_service,
    provision_service,
)
from .serializers import DeprovisionRequest, ProvisionRequest


class AnyTypeJSONParser(JSONParser):
    """Parses the body as JSON whatever Content-Type the caller sent.

    Callers that forget the header get their JSON read, and a body that is not
    JSON gets a 400 invalid_json rather than DRF's 415.
    """

    media_type = "*/*"


class ProvisioningView(APIView):
    parser_classes = [JSONParser, AnyTypeJSONParser]

    def validated(self, serializer_class):
        serializer = serializer_class(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class ProvisionView(ProvisioningView):
    def post(self, request):
        data = self.validated(ProvisionRequest)
        answer, created = provision_service(
            data["serviceId"], data["serviceName"], data["capabilities"]
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(answer, status=code)


class DeprovisionView(ProvisioningView):
    def post(self, request):
        data = self.validated(DeprovisionRequest)
        return Response(deprovision_service(data["serviceId"]))


class ServiceListView(ProvisioningView):
    def get(self, request):
        services = Service.objects.prefetch_related("resources")
        return Response({"services": [describe_service(s) for s in services]})


class ServiceDetailView(ProvisioningView):
    def get(self, request, service_id):
        return Response(describe_service(load_service(service_id)))
