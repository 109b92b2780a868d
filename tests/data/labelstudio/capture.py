"""Capture the ``/predict`` request a real Label Studio sends (``predict_request.json``).

Starts Label Studio (``SAMREFINER_LABEL_STUDIO``: its ``label-studio`` executable) as the
live test does, imports nine tasks over two shared DAVIS 2016 photographs: a coarse brush,
polygon or rectangle region, held by an annotation, a prediction, or both (the annotation
made after the prediction, with another region id), connects a recording ML backend,
runs "Retrieve Predictions" on all tasks and writes the body Label Studio posted.

    SAMREFINER_LABEL_STUDIO=.venv-labelstudio/bin/label-studio \\
        python tests/data/labelstudio/capture.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import ClassVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/: the live test's helpers

import test_labelstudio_live as live  # noqa: E402


class _Recorder(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list] = []

    def _answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._answer({"status": "UP"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.startswith("/predict"):
            self.bodies.append(body)
            # No 'result': Label Studio stores nothing.
            self._answer({"results": [{"error": "recorded"} for _ in body["tasks"]]})
        else:
            self._answer({"model_version": "recorder"})

    def log_message(self, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=HERE.parents[2].parent / "shared" / "data")
    args = parser.parse_args()
    pairs = [
        (
            args.data / "davis2016" / "images" / f"{n}.jpg",
            args.data / "davis2016" / "masks" / f"{n}.png",
        )
        for n in ("bear_00000", "blackswan_00000")
    ]
    coarse = live._coarse((args.data, pairs))  # per image: brush, polygon, rectangle + polygon
    tasks, later = [], []
    for k in range(2):
        brush, polygon, (rectangle, _) = (
            t["predictions"][0]["result"] for t in coarse[3 * k : 3 * k + 3]
        )
        url = coarse[3 * k]["data"]["image"]
        for region in (brush[0], polygon[0], rectangle) if k == 0 else (brush[0], polygon[0]):
            for where in ("annotations", "predictions", "both"):
                task = {"data": {"image": url, "case": f"{k}:{region['type']}/{where}"}}
                if where != "annotations":
                    task["predictions"] = [
                        {"model_version": "coarse", "score": 0.5, "result": [region]}
                    ]
                tasks.append(task)
                later.append(
                    None if where == "predictions" else {**region, "id": region["id"] + "a"}
                )
    executable = Path(os.environ["SAMREFINER_LABEL_STUDIO"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with (
        tempfile.TemporaryDirectory() as home,
        live.running_label_studio(executable, Path(home), args.data) as url,
    ):
        try:
            headers = {"Authorization": f"Token {live.TOKEN}"}
            api = url + "/api"
            pid = live._call(
                "POST",
                f"{api}/projects",
                {"title": "capture", "label_config": live.CONFIG},
                headers,
            )["id"]
            live._call("POST", f"{api}/projects/{pid}/import", tasks, headers)
            stored = live._call("GET", f"{api}/tasks?project={pid}&page_size=100", headers=headers)
            stored = stored["tasks"] if isinstance(stored, dict) else stored
            by_case = {t["data"]["case"]: t["id"] for t in stored}
            for task, region in zip(tasks, later, strict=True):
                if region is not None:
                    tid = by_case[task["data"]["case"]]
                    live._call(
                        "POST", f"{api}/tasks/{tid}/annotations", {"result": [region]}, headers
                    )
            backend = f"http://127.0.0.1:{server.server_address[1]}"
            live._call(
                "POST", f"{api}/ml", {"url": backend, "project": pid, "title": "recorder"}, headers
            )
            live._call(
                "POST",
                f"{api}/dm/actions?id=retrieve_tasks_predictions&project={pid}",
                {"selectedItems": {"all": True, "excluded": []}},
                headers,
            )
        finally:
            server.shutdown()
    (body,) = _Recorder.bodies
    out = HERE / "predict_request.json"
    out.write_text(json.dumps(body, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{out}: {len(body['tasks'])} tasks, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
