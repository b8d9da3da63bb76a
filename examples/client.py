#!/usr/bin/env python3
"""Spotlight API client example: standard library only.

    python3 examples/client.py [--url http://127.0.0.1:8080] [--prompt "The light"]

The token comes from SPOTLIGHT_TOKEN when the server needs one. With SPOTLIGHT_RECORD_DIR
set, every response is also saved there (CI validates them against api/openapi.json).
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


class APIError(Exception):
    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


class Client:
    def __init__(self, url, token=None):
        self.url, self.token = url.rstrip("/"), token
        self.recorded = 0

    def call(self, method, path, body=None, template=None, retries=5):
        """One request; retries 429 after Retry-After seconds; raises APIError on 4xx/5xx."""
        for attempt in range(retries + 1):
            status, headers, raw = self._send(method, path, body)
            self._record(method, template or path, status, raw)
            if status == 429 and attempt < retries:
                time.sleep(float(headers.get("Retry-After", "1")))
                continue
            data = json.loads(raw)
            if status >= 400:
                raise APIError(status, data["error"]["code"], data["error"]["message"])
            return data

    def _send(self, method, path, body):
        req = urllib.request.Request(self.url + path, method=method)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, data=data, timeout=120) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def _record(self, method, path, status, raw):
        d = os.environ.get("SPOTLIGHT_RECORD_DIR")
        if not d:
            return
        self.recorded += 1
        rec = {"method": method, "path": path, "status": status, "body": json.loads(raw)}
        with open(os.path.join(d, f"py-{self.recorded:04d}.json"), "w") as f:
            json.dump(rec, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("SPOTLIGHT_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--prompt", default="The light")
    ap.add_argument("--tokens", type=int, default=8)
    args = ap.parse_args()
    c = Client(args.url, os.environ.get("SPOTLIGHT_TOKEN"))

    m = c.call("GET", "/v1/model")
    cfg = m["config"]
    print(f"model at step {m['step']}: d={cfg['d']} blocks={cfg['blocks']} ctx={cfg['ctx']} "
          f"vocab={len(m['vocabulary'])}, memory {m['memory_bytes']:,} bytes")

    ans = c.call("POST", "/v1/generate",
                 {"prompt": args.prompt, "tokens": args.tokens, "top_k": 3, "layers": ["out"]})
    print(f"\n{args.prompt!r} → {ans['text']!r} (checkpoint {ans['step']})")
    for t in ans["tokens"]:
        top = t["layers"]["out"]["top"][0]
        print(f"  {t['token']!r:6} p={t['prob']:.2f}  most from step {top['step']:4d}: "
              f"{top['context'][-20:]!r} → {top['target']!r} ({top['contribution']:+.3f})")

    att = c.call("POST", "/v1/attribute", {"text": args.prompt, "top_k": 1, "layers": ["out"]})
    print(f"\nteacher-forced {att['text']!r}:")
    for t in att["tokens"]:
        print(f"  {t['token']!r:6} p={t['prob']:.3f}")

    st = c.call("GET", "/v1/steps/1", template="/v1/steps/{step}")
    print(f"\nstep 1: loss {st['loss']:.3f}, lr {st['lr']:.4f}, clip {st['clip']:.3f}, "
          f"row 0 saw {st['rows'][0]['context']!r}")

    tr = c.call("GET", "/v1/train")
    print(f"training: running={tr['running']} committed={tr['committed']}")

    try:
        c.call("POST", "/v1/generate", {"prompt": args.prompt, "tokens": 100000})
    except APIError as e:
        print(f"\nbad input is a clear error: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
