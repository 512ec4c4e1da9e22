"""The 8-device process runner, for tests/test_examples.py; it lives in tests/conftest.py.

Test modules use the ``eight_devices`` fixture instead of importing this module.
"""

from conftest import run_eight_device_process

__all__ = ["run_eight_device_process"]
