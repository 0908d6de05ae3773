"""The web process reads what the sampler writes: it must not load the sampler's code.

Loading libbpf, the flow-table harvester or the sampler's flow tracker in daphne would cost
memory in every web process, and tie the web side to the kernel side's ctypes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLER_ONLY = ("bcc", "bpf.libbpf", "bpf.flow_table", "bpf.program", "metrics.flows")

# Everything daphne serves: the URLs (API, admin, dashboard), the ASGI app and its consumers.
WEB = """
import json, sys
import django
django.setup()
import netmetrics.asgi, netmetrics.urls, metrics.admin, metrics.consumers
from django.urls import get_resolver
get_resolver().url_patterns
print(json.dumps(sorted(sys.modules)))
"""


def test_the_web_process_imports_no_sampler_code() -> None:
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "netmetrics.settings"}
    out = subprocess.run(
        [sys.executable, "-c", WEB], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    modules = set(json.loads(out.stdout))
    assert "metrics.talkers" in modules and "bpf.flows" in modules  # it did load the flow API
    assert modules.isdisjoint(SAMPLER_ONLY), sorted(modules.intersection(SAMPLER_ONLY))
