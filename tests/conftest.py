"""Test settings: 8 virtual CPU devices (set before JAX initialises) so pmap paths run as they would on a
multi-GPU host, and a `slow` marker for end-to-end tests (they still run in CI)."""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
