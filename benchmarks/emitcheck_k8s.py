"""The Kubernetes side of benchmarks/emitcheck_worker.py: each manifest document through
kubernetes-validate (strict, every Kubernetes version asked for), a LeaderWorkerSet through its
CRD's fields and its pod templates through core/v1 PodTemplateSpec. Runs in the
kubernetes-validate environment; only the standard library at module level.
"""
from __future__ import annotations

#: The LeaderWorkerSet CRD's schema for the fields around the pod templates, written from
#: kubernetes-sigs/lws api/leaderworkerset/v1/leaderworkerset_types.go (LeaderWorkerSetSpec,
#: LeaderWorkerTemplate, RolloutStrategy, NetworkConfig and their kubebuilder enums and defaults);
#: leaderTemplate and workerTemplate are core/v1 PodTemplateSpec, validated with the Kubernetes schema.
LWS_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "leaderworkerset.x-k8s.io/v1"}, "kind": {"const": "LeaderWorkerSet"},
        "metadata": {"type": "object"},
        "spec": {"type": "object", "required": ["leaderWorkerTemplate"], "additionalProperties": False,
                 "properties": {
                     "replicas": {"type": "integer", "minimum": 0},
                     "startupPolicy": {"enum": ["LeaderCreated", "LeaderReady"]},
                     "rolloutStrategy": {"type": "object"},
                     "networkConfig": {"type": "object", "properties": {
                         "subdomainPolicy": {"enum": ["Shared", "UniquePerReplica"]}}},
                     "leaderWorkerTemplate": {
                         "type": "object", "required": ["workerTemplate"], "additionalProperties": False,
                         "properties": {
                             "leaderTemplate": {"type": "object"}, "workerTemplate": {"type": "object"},
                             "size": {"type": "integer", "minimum": 1},
                             "restartPolicy": {"enum": ["Default", "RecreateGroupOnPodRestart",
                                                        "RecreateGroupAfterStart", "None"]},
                             "subGroupPolicy": {"type": "object"}, "volumeClaimTemplates": {"type": "array"},
                             "persistentVolumeClaimRetentionPolicy": {"type": "object"}}}}},
    },
}


# Gateway API's named string and number types (apis/v1/shared_types.go): their lengths and patterns.
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}  # PortNumber
_OBJECT_NAME = {"type": "string", "minLength": 1, "maxLength": 253}  # ObjectName
_SECTION_NAME = {"type": "string", "minLength": 1, "maxLength": 253, "pattern": _DNS_SUBDOMAIN}  # SectionName
_REF_FIELDS = {
    "group": {"type": "string", "maxLength": 253, "pattern": "^$|" + _DNS_SUBDOMAIN},  # Group
    "kind": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"},
    "namespace": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
    "name": _OBJECT_NAME}

#: Gateway API HTTPRoute (gateway.networking.k8s.io/v1, standard channel), the fields of its spec as
#: kubernetes-sigs/gateway-api apis/v1 declares them: httproute_types.go (HTTPRouteSpec: hostnames at
#: most 16, rules 1 to 16; HTTPRouteRule: matches at most 64, filters at most 16, backendRefs at most
#: 16), shared_types.go (CommonRouteSpec: parentRefs at most 32; ParentReference: name required;
#: BackendRef: weight 0 to 1,000,000, default 1; PortNumber 1 to 65535) and
#: object_reference_types.go (BackendObjectReference: name required, group defaulting to "" and kind
#: to Service, and the CRD's CEL rule "Must have port for Service reference", written here as
#: if/then on the defaulted fields). Matches, filters, timeouts and retries are objects whose
#: insides are not checked (the emitter writes none).
HTTPROUTE_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"}, "kind": {"const": "HTTPRoute"},
        "metadata": {"type": "object", "required": ["name"], "properties": {"name": _OBJECT_NAME}},
        "spec": {"type": "object", "additionalProperties": False, "properties": {
            "parentRefs": {"type": "array", "maxItems": 32, "items": {
                "type": "object", "required": ["name"], "additionalProperties": False,
                "properties": {**_REF_FIELDS, "sectionName": _SECTION_NAME, "port": _PORT}}},
            "hostnames": {"type": "array", "maxItems": 16, "items": {"type": "string", "minLength": 1,
                                                                      "maxLength": 253}},
            "rules": {"type": "array", "minItems": 1, "maxItems": 16, "items": {
                "type": "object", "additionalProperties": False, "properties": {
                    "name": _SECTION_NAME,
                    "matches": {"type": "array", "maxItems": 64, "items": {"type": "object"}},
                    "filters": {"type": "array", "maxItems": 16, "items": {"type": "object"}},
                    "timeouts": {"type": "object"}, "retry": {"type": "object"},
                    "backendRefs": {"type": "array", "maxItems": 16, "items": {
                        "type": "object", "required": ["name"], "additionalProperties": False,
                        "properties": {**_REF_FIELDS, "port": _PORT,
                                       "weight": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
                                       "filters": {"type": "array", "maxItems": 16, "items": {"type": "object"}}},
                        # "Must have port for Service reference", on group "" and kind Service as defaulted
                        "if": {"properties": {"group": {"const": ""}, "kind": {"const": "Service"}}},
                        "then": {"required": ["port"]}}}}}}}},
    },
}

def _pod_template_errors(template: dict, version: str) -> list[str]:
    """A pod template against Kubernetes ``version``'s strict core/v1 PodTemplateSpec schema."""
    import jsonschema
    from kubernetes_validate.utils import schema_contents
    from referencing import Registry, Resource

    folder = f"kubernetes-json-schema/v{version}.0-local-strict"
    schema = schema_contents(f"{folder}/podtemplatespec-v1.json", version)
    defs = Resource.from_contents(schema_contents(f"{folder}/_definitions.json", version))
    registry = defs @ (Resource.from_contents(schema) @ Registry())
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(template)]


def k8s_job(job: dict) -> dict:
    """One manifest document against each Kubernetes release's strict schemas (kubernetes-validate), a
    LeaderWorkerSet against ``LWS_SCHEMA`` and its pod templates against PodTemplateSpec, a Gateway API
    HTTPRoute against ``HTTPROUTE_SCHEMA``."""
    import jsonschema
    import kubernetes_validate

    doc, errors = job["doc"], []
    for version in job["versions"]:
        if doc.get("kind") == "HTTPRoute":
            errors += [f"{version}: {e.json_path}: {e.message}"
                       for e in jsonschema.Draft202012Validator(HTTPROUTE_SCHEMA).iter_errors(doc)]
        elif doc.get("kind") == "LeaderWorkerSet":
            errors += [f"{version}: {e.message}" for e in jsonschema.Draft202012Validator(LWS_SCHEMA).iter_errors(doc)]
            lwt = doc["spec"]["leaderWorkerTemplate"]
            for key in ("leaderTemplate", "workerTemplate"):
                errors += [f"{version} {key}.{e}" for e in _pod_template_errors(lwt.get(key, {}), version)]
        else:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{version}: {e.message}")
            except kubernetes_validate.utils.SchemaNotFoundError:
                return {"unjudged": f"kubernetes-validate has no schema for {doc.get('apiVersion')} {doc.get('kind')}"}
    if errors:
        raise ValueError("; ".join(errors[:5]))
    return {"kind": doc.get("kind"), "versions": job["versions"]}
