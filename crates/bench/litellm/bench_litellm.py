"""LiteLLM side of `genroute-bench overhead`: the same gpt-image-1 job against the same emulators.

Usage: python bench_litellm.py --env env.json --out DIR [--iters 100] [--rounds 3]

Latency: time.perf_counter_ns around each call. Client CPU: time.process_time_ns() deltas over each batch
(CLOCK_PROCESS_CPUTIME_ID: every thread of this process, nothing of the emulator process). Calls are
sequential; modes are interleaved round by round; round 0 is a warm-up and is not recorded.
"""

import argparse
import base64
import importlib.metadata
import json
import math
import os
import sys
import time
import urllib.request

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

import litellm  # noqa: E402
from litellm import Router  # noqa: E402

PROMPT = "a lighthouse at dusk, watercolor"  # the same prompt as overhead.rs
MODEL = "openai/gpt-image-1"


def counts(admin):
    with urllib.request.urlopen(admin + "/counts") as r:
        return json.load(r)


def check(resp):
    b64 = resp.data[0].b64_json
    if not b64:
        raise RuntimeError("no b64_json in the answer")
    return len(base64.b64decode(b64))


def quantile_us(values_ns, q):
    v = sorted(values_ns)

    rank = min(max(math.ceil(q * len(v)), 1), len(v))
    return v[rank - 1] / 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    # A LiteLLM failover job takes over a second (the OpenAI SDK's retry backoff): fewer of them.
    ap.add_argument("--failover-iters", type=int, default=5)
    ap.add_argument("--cooldown-jobs", type=int, default=20)
    a = ap.parse_args()
    env = json.load(open(a.env))
    ok, fail, key, admin = env["openai_ok"], env["openai_fail"], env["openai_key"], env["admin"]
    litellm.suppress_debug_info = True

    params = dict(n=1, size="1024x1024", quality="low")

    def direct():
        check(litellm.image_generation(model=MODEL, prompt=PROMPT, api_base=ok, api_key=key, **params))

    two = Router(
        model_list=[
            {"model_name": "img", "litellm_params": {"model": MODEL, "api_base": ok, "api_key": key}},
            {"model_name": "img", "litellm_params": {"model": MODEL, "api_base": ok, "api_key": key}},
        ],
        num_retries=0,
    )

    def routed():
        check(two.image_generation(model="img", prompt=PROMPT, **params))

    def failover_router(**extra):
        return Router(
            model_list=[
                {
                    "model_name": "primary",
                    "litellm_params": {"model": MODEL, "api_base": fail, "api_key": key, "max_retries": 0},
                },
                {
                    "model_name": "fallback",
                    "litellm_params": {"model": MODEL, "api_base": ok, "api_key": key, "max_retries": 0},
                },
            ],
            fallbacks=[{"primary": ["fallback"]}],
            num_retries=0,
            **extra,
        )

    # Cooldowns off: every job really calls the failing primary (as genroute's never-opening breaker).
    fo = failover_router(disable_cooldowns=True)

    def failover():
        check(fo.image_generation(model="primary", prompt=PROMPT, **params))

    modes = [
        ("litellm_image_generation", "LiteLLM `litellm.image_generation` (api_base = emulator)", direct),
        ("litellm_router", "LiteLLM `Router.image_generation`, 2 deployments", routed),
        ("litellm_failover", "LiteLLM Router failover job (500 then fallback, cooldowns off)", failover),
    ]
    lat = {k: [] for k, _, _ in modes}
    cpu = {k: 0 for k, _, _ in modes}
    calls = {k: 0 for k, _, _ in modes}
    fo_primary = fo_fallback = 0
    for rnd in range(a.rounds + 1):
        for i in range(len(modes)):
            k, _, fn = modes[(i + rnd) % len(modes)]
            before = counts(admin) if k == "litellm_failover" else None
            n = a.failover_iters if k == "litellm_failover" else a.iters
            ls = []
            c0 = time.process_time_ns()
            for _ in range(n):
                t0 = time.perf_counter_ns()
                fn()
                ls.append(time.perf_counter_ns() - t0)
            c = time.process_time_ns() - c0
            if rnd == 0:
                continue
            lat[k].extend(ls)
            cpu[k] += c
            calls[k] += n
            if before is not None:
                after = counts(admin)
                fo_primary += after["openai_fail_create"] - before["openai_fail_create"]
                fo_fallback += after["openai_ok_create"] - before["openai_ok_create"]

    # Default settings (cooldowns on), like genroute's default breaker.
    fo_default = failover_router()
    before = counts(admin)
    n_default = a.cooldown_jobs
    for _ in range(n_default):
        check(fo_default.image_generation(model="primary", prompt=PROMPT, **params))
    after = counts(admin)

    rows = []
    for k, name, _ in modes:
        rows.append(
            {
                "key": k,
                "name": name,
                "calls": calls[k],
                "p50_us": quantile_us(lat[k], 0.5),
                "p99_us": quantile_us(lat[k], 0.99),
                "cpu_us": cpu[k] / calls[k] / 1e3,
            }
        )
    result = {
        "litellm_version": importlib.metadata.version("litellm"),
        "python": sys.version.split()[0],
        "iters_per_batch": a.iters,
        "rounds": a.rounds,
        "rows": rows,
        "failover": {
            "jobs": calls["litellm_failover"],
            "primary_calls": fo_primary,
            "fallback_calls": fo_fallback,
            "default_cooldown_jobs": n_default,
            "default_cooldown_primary_calls": after["openai_fail_create"] - before["openai_fail_create"],
        },
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "litellm.json"), "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
