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
    LeaderWorkerSet against ``LWS_SCHEMA`` and its pod templates against PodTemplateSpec."""
    import jsonschema
    import kubernetes_validate

    doc, errors = job["doc"], []
    for version in job["versions"]:
        if doc.get("kind") == "LeaderWorkerSet":
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
