"""Start-up: import time and the first forward+backward call, each sample a fresh interpreter.

``timeraw_*`` benchmarks: asv runs the returned statement in a new Python process and times only
the statement, after the returned setup code.  The first call is ``lstm_forward`` +
``lstm_backward`` on the LSTM 25x16x256x512 float32 case (``fastrnn.bench.STARTUP_CASE``):

* cold: ``NUMBA_CACHE_DIR`` is a new, empty directory for every sample, so every kernel that
  call needs is compiled (the figure the issue asks us to report);
* warm: ``NUMBA_CACHE_DIR`` was filled once in ``setup``, so the call only loads compiled code
  (target: under 0.5 s).
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

from . import common

_SETUP = """\
import os, tempfile
os.environ["NUMBA_CACHE_DIR"] = {cache_dir}
os.environ.pop("FASTRNN_NO_CACHE", None)
import importlib
layers = importlib.import_module({module!r})
from fastrnn.bench import CASES_BY_NAME, make_inputs
p = make_inputs(CASES_BY_NAME[{case!r}])
"""

_FIRST_CALL = """\
h, cache = layers.lstm_forward(p["x"], p["h0"], p["Wx"], p["Wh"], p["b"])
layers.lstm_backward(p["dh"], cache)
"""


class _RawTiming:
    number = 1
    repeat = 3
    rounds = 1
    warmup_time = 0
    timeout = 600


class Import(_RawTiming):
    def timeraw_import_fastrnn(self):
        """``import fastrnn`` (target: under 0.3 s); it imports neither numba nor any kernel."""
        return "import fastrnn"


class FirstCall(_RawTiming):
    def setup(self):
        self.module = common.FAST_MODULE
        if importlib.util.find_spec(self.module) is None:
            raise NotImplementedError(f"{self.module} is not available")
        self.case = common.bench.STARTUP_CASE
        self.tmp = tempfile.mkdtemp(prefix="fastrnn-asv-startup-")
        self.warm_cache = os.path.join(self.tmp, "warm")
        os.mkdir(self.warm_cache)
        # Fill the warm cache: one full run in a separate interpreter.
        subprocess.run([sys.executable, "-c", self._setup_code(repr(self.warm_cache))
                        + _FIRST_CALL], check=True, capture_output=True)

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _setup_code(self, cache_dir_expression):
        return _SETUP.format(cache_dir=cache_dir_expression, module=self.module, case=self.case)

    def timeraw_import_layers(self):
        """Importing the layer module (numba and the kernel modules), warm on-disk cache."""
        return (f"import {self.module}",
                f"import os\nos.environ['NUMBA_CACHE_DIR'] = {self.warm_cache!r}\n")

    def timeraw_first_call_cold(self):
        """First lstm forward+backward with an empty Numba cache: compiles (reported)."""
        return _FIRST_CALL, self._setup_code(f"tempfile.mkdtemp(dir={self.tmp!r})")

    def timeraw_first_call_warm(self):
        """First lstm forward+backward with a filled on-disk cache (target: under 0.5 s)."""
        return _FIRST_CALL, self._setup_code(repr(self.warm_cache))
