"""The session-wide test stack (real Kafka, Redis, …) for the streaming tests."""

from tests.support.stack_fixture import stack  # noqa: F401  (re-exported pytest fixture)
