import uuid

from gateway.config import DEFAULT_NAMESPACE, Settings
from gateway.identity import task_uuid


def test_default_namespace_is_derived_from_the_taskgate_urn():
    assert uuid.uuid5(uuid.NAMESPACE_URL, "urn:taskgate:task") == DEFAULT_NAMESPACE


def test_task_uuid_of_the_contract_example():
    assert str(task_uuid(DEFAULT_NAMESPACE, "acme", "T-1001")) == "e98a61d6-14d6-5dcc-99de-e4130e825881"


def test_task_uuid_depends_on_client_and_namespace():
    other_namespace = uuid.uuid4()
    assert task_uuid(DEFAULT_NAMESPACE, "acme", "T-1") != task_uuid(DEFAULT_NAMESPACE, "other", "T-1")
    assert task_uuid(other_namespace, "acme", "T-1") != task_uuid(DEFAULT_NAMESPACE, "acme", "T-1")


def test_namespace_is_configurable():
    namespace = uuid.uuid4()
    settings = Settings.from_env({"TASKGATE_NAMESPACE": str(namespace)})
    assert settings.namespace == namespace
