"""Root conftest: the shared fixtures (real nats-server, databases) for every test in the tree."""

pytest_plugins = ["telecrm_devstack.testing"]
