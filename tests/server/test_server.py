#!/usr/bin/env python3
"""chatterbox-server behaviour against a real server process on loopback,
with the tiny random-weight fixture model (plumbing only; greedy T3).
  test_server.py SERVER_BINARY FIXTURES_DIR
Every endpoint and every refusal, streaming (chunked, first bytes before the
end), WebSocket, voices upload, cancel on disconnect, 503 on overload, the
time limit."""
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_util import SENTENCE, Server, WebSocket, make_model_dir, model_args, speech_raw, wait_for  # noqa: E402

BINARY, FIXTURES = sys.argv[1], sys.argv[2]
del sys.argv[1:3]
# Many sentences, each its own utterance: several seconds of synthesis.
LONG = " ".join(f"{SENTENCE} number {i}." for i in range(15))  # < --max-input 1000


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cbx-server-")
        cls.model = make_model_dir(FIXTURES, os.path.join(cls.tmp, "model"))
        cls.voices = os.path.join(cls.tmp, "voices")
        cls.srv = Server(BINARY, model_args("tiny", cls.model, FIXTURES) +
                         ["--voices-dir", cls.voices, "--workers", "1", "--queue", "1", "--max-input", "1000"],
                         log=os.path.join(cls.tmp, "server.log"))

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        alive = cls.srv.proc.returncode
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert alive == 0, f"server exit status {alive}"

    def setUp(self):
        self.assertIsNone(self.srv.proc.poll(), "the server process died")
        # Every test starts idle (a previous test's cancelled pipelines are gone).
        self.assertIsNotNone(wait_for(lambda: self.srv.metrics()["chatterbox_active_workers"] == 0, 10))

    def speech(self, **fields):
        body = {"model": "tiny", "input": SENTENCE}
        body.update(fields)
        return self.srv.request("POST", "/v1/audio/speech", body)

    def assertError(self, result, status, code, param=None):
        st, hdr, data = result
        self.assertEqual(st, status, data)
        self.assertTrue(hdr["content-type"].startswith("application/json"))
        err = json.loads(data)["error"]
        self.assertEqual(err["code"], code)
        self.assertTrue(err["message"])
        self.assertIn(err["type"], ("invalid_request_error", "server_error"))
        if param:
            self.assertEqual(err["param"], param)

    # ---- endpoints ----
    def test_health(self):
        st, hdr, data = self.srv.request("GET", "/health")
        self.assertEqual(st, 200)
        h = json.loads(data)
        self.assertEqual(h["status"], "ok")
        self.assertEqual(h["workers"], 1)

    def test_models(self):
        st, _, data = self.srv.request("GET", "/v1/models")
        self.assertEqual(st, 200)
        self.assertEqual([m["id"] for m in json.loads(data)["data"]], ["tiny"])

    def test_speech_wav_streamed(self):
        c = self.srv.conn()
        c.request("POST", "/v1/audio/speech", json.dumps({"model": "tiny", "input": SENTENCE, "voice": "default"}))
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Transfer-Encoding"), "chunked")
        self.assertEqual(r.getheader("Content-Type"), "audio/wav")
        data = r.read()
        self.assertEqual(data[:4], b"RIFF")
        self.assertEqual(data[8:16], b"WAVEfmt ")
        self.assertEqual(int.from_bytes(data[24:28], "little"), 24000)
        # Greedy tiny T3 gives 15 tokens for this sentence: 30 frames of 480 samples.
        self.assertEqual(len(data) - 44, 30 * 480 * 2)

    def test_formats(self):
        _, _, wav = self.speech(response_format="wav")
        st, hdr, pcm = self.speech(response_format="pcm")
        self.assertEqual((st, hdr["content-type"]), (200, "audio/pcm"))
        self.assertEqual(pcm, wav[44:])  # same greedy synthesis, raw
        magic = {"opus": b"OggS", "flac": b"fLaC"}
        for fmt, m in magic.items():
            st, _, data = self.speech(response_format=fmt)
            self.assertEqual(st, 200, fmt)
            self.assertEqual(data[:4], m, fmt)
        st, _, mp3 = self.speech(response_format="mp3")
        self.assertEqual(st, 200)
        self.assertTrue(mp3[:3] == b"ID3" or (mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0), mp3[:4])

    def test_speed_one_accepted(self):
        self.assertEqual(self.speech(speed=1.0, response_format="pcm")[0], 200)

    # ---- refusals ----
    def test_errors(self):
        req = lambda body, **kw: self.srv.request("POST", "/v1/audio/speech", body, **kw)  # noqa: E731
        self.assertError(req("{not json"), 400, "invalid_json")
        self.assertError(req("[1, 2]"), 400, "invalid_json")
        self.assertError(req({"input": SENTENCE}), 400, "missing_field", "model")
        self.assertError(req({"model": "tiny"}), 400, "missing_field", "input")
        self.assertError(req({"model": 3, "input": "x"}), 400, "invalid_type", "model")
        self.assertError(self.speech(model="nope"), 404, "model_not_found", "model")
        self.assertError(self.speech(voice="nobody"), 404, "voice_not_found", "voice")
        self.assertError(self.speech(voice="../model/conds"), 404, "voice_not_found", "voice")
        self.assertError(self.speech(input="  \n "), 400, "empty_input", "input")
        self.assertError(self.speech(input="a" * 1001), 400, "input_too_long", "input")
        self.assertError(self.speech(input="x" * 100000), 413, "request_too_large")
        self.assertError(self.speech(response_format="aac"), 400, "unsupported_response_format", "response_format")
        self.assertError(self.speech(speed=1.5), 400, "unsupported_speed", "speed")
        self.assertError(self.speech(speed="fast"), 400, "invalid_type", "speed")
        self.assertError(self.srv.request("GET", "/v1/audio/speech"), 405, "method_not_allowed")
        self.assertError(self.srv.request("GET", "/v2/nothing"), 404, "not_found")
        m = self.srv.metrics()
        self.assertGreaterEqual(m['chatterbox_errors_total{code="invalid_json"}'], 2)
        self.assertGreaterEqual(m['chatterbox_requests_total{endpoint="/v1/audio/speech",code="404"}'], 3)

    def test_pipeline_failure_is_500(self):
        # A voice file that passes the upload check but no loader can read.
        os.makedirs(self.voices, exist_ok=True)
        with open(os.path.join(self.voices, "broken.safetensors"), "wb") as f:
            f.write((20).to_bytes(8, "little") + b'{"x": 1}' + b" " * 12)
        self.assertError(self.speech(voice="broken"), 500, "synthesis_failed")
        os.remove(os.path.join(self.voices, "broken.safetensors"))
        self.assertEqual(self.speech(response_format="pcm")[0], 200)  # and the server carries on

    # ---- voices ----
    def test_voices_upload_and_use(self):
        with open(os.path.join(FIXTURES, "t3/conds_tiny.pt"), "rb") as f:
            conds = f.read()
        st, _, data = self.srv.request("POST", "/v1/voices", conds, {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, data)
        vid = json.loads(data)["id"]
        self.assertTrue(os.path.isfile(os.path.join(self.voices, vid + ".pt")))
        # multipart/form-data with a chosen name (as OpenAI-style clients send files)
        boundary = "cbxboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nnarrator\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"conds.pt\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + conds + f"\r\n--{boundary}--\r\n".encode()
        st, _, data = self.srv.request("POST", "/v1/voices", body,
                                       {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        self.assertEqual(st, 201, data)
        self.assertEqual(json.loads(data)["id"], "narrator")
        st, _, data = self.srv.request("GET", "/v1/voices")
        ids = [v["id"] for v in json.loads(data)["data"]]
        self.assertIn(vid, ids)
        self.assertIn("narrator", ids)
        # the model's own conds.pt, uploaded: the same audio as "default"
        _, _, a = self.speech(voice="narrator", response_format="pcm")
        _, _, b = self.speech(voice="default", response_format="pcm")
        self.assertEqual(a, b)
        self.assertError(self.srv.request("POST", "/v1/voices", b"hello, not audio"), 400, "invalid_voice_file")
        bad = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n../x\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n").encode() + conds + \
            f"\r\n--{boundary}--\r\n".encode()
        self.assertError(self.srv.request("POST", "/v1/voices", bad,
                                          {"Content-Type": f"multipart/form-data; boundary={boundary}"}),
                         400, "invalid_voice_name")

    # ---- WebSocket ----
    def test_websocket_incremental(self):
        ws = WebSocket(self.srv.port, "/v1/audio/speech/stream")
        self.assertEqual(ws.status, 101)
        ws.send_text(json.dumps({"model": "tiny", "voice": "default", "response_format": "pcm"}))
        op, data = ws.recv()
        self.assertEqual((op, json.loads(data)["type"]), (1, "ready"))
        # Tokens as an LLM sends them: the first sentence is complete after the
        # third message; its audio must come back before "end" is sent.
        for piece in ["the little robot ", "counted stones ", "by the river. ", "and then it "]:
            ws.send_text(json.dumps({"text": piece}))
        op, data = ws.recv()
        self.assertEqual(op, 2)
        audio = bytearray(data)
        ws.send_text(json.dumps({"text": "slept."}))
        ws.send_text(json.dumps({"type": "end"}))
        while True:
            op, data = ws.recv()
            if op == 2:
                audio += data
            else:
                break
        self.assertEqual(op, 1)
        done = json.loads(data)
        self.assertEqual(done["type"], "done")
        self.assertEqual(len(audio) % 2, 0)
        self.assertAlmostEqual(done["audio_seconds"], len(audio) / 2 / 24000, places=3)
        self.assertEqual(ws.recv()[0], 8)  # close
        ws.close()

    def test_websocket_refusals(self):
        ws = WebSocket(self.srv.port, "/v1/audio/speech/stream")
        ws.send_text(json.dumps({"model": "nope"}))
        op, data = ws.recv()
        self.assertEqual(json.loads(data)["error"]["code"], "model_not_found")
        self.assertEqual(ws.recv()[0], 8)
        ws.close()
        ws = WebSocket(self.srv.port, "/v1/audio/speech/stream")
        ws.send_text("{nope")
        self.assertEqual(json.loads(ws.recv()[1])["error"]["code"], "invalid_json")
        ws.close()

    def test_websocket_disconnect_cancels(self):
        before = self.srv.metrics()["chatterbox_cancelled_total"]
        ws = WebSocket(self.srv.port, "/v1/audio/speech/stream")
        ws.send_text(json.dumps({"model": "tiny", "response_format": "pcm"}))
        self.assertEqual(json.loads(ws.recv()[1])["type"], "ready")
        ws.send_text(json.dumps({"text": LONG + " "}))
        self.assertEqual(ws.recv()[0], 2)  # audio is coming
        ws.close()  # no close frame: the connection just goes
        self.assertIsNotNone(wait_for(lambda: self.srv.metrics()["chatterbox_active_workers"] == 0, 5))
        self.assertEqual(self.srv.metrics()["chatterbox_cancelled_total"], before + 1)

    # ---- limits ----
    def test_cancel_on_disconnect(self):
        before = self.srv.metrics()["chatterbox_cancelled_total"]
        s = speech_raw(self.srv.port, {"model": "tiny", "input": LONG, "response_format": "pcm"})
        self.assertIsNotNone(wait_for(lambda: self.srv.metrics()["chatterbox_active_workers"] == 1, 10))
        first = s.recv(4096)  # audio is streaming
        self.assertTrue(first.startswith(b"HTTP/1.1 200"), first[:40])
        s.close()
        t = wait_for(lambda: self.srv.metrics()["chatterbox_active_workers"] == 0, 5)
        self.assertIsNotNone(t, "the pipeline kept running after the client left")
        print(f"cancel on disconnect: worker free {t * 1000:.0f} ms after the client closed")
        self.assertEqual(self.srv.metrics()["chatterbox_cancelled_total"], before + 1)
        # Disconnect while queued, too: the queue slot frees.
        a = speech_raw(self.srv.port, {"model": "tiny", "input": LONG, "response_format": "pcm"})
        self.assertIsNotNone(wait_for(lambda: self.srv.metrics()["chatterbox_active_workers"] == 1, 10))
        b = speech_raw(self.srv.port, {"model": "tiny", "input": LONG, "response_format": "pcm"})
        self.assertIsNotNone(wait_for(lambda: self.srv.metrics()["chatterbox_queue_depth"] == 1, 10))
        b.close()
        self.assertIsNotNone(wait_for(lambda: self.srv.metrics()["chatterbox_queue_depth"] == 0, 5))
        a.close()

    def test_overload_503(self):
        # 1 worker + 1 queue slot: the third concurrent request is refused at once.
        a = speech_raw(self.srv.port, {"model": "tiny", "input": LONG, "response_format": "pcm"})
        self.assertIsNotNone(wait_for(lambda: self.srv.metrics()["chatterbox_active_workers"] == 1, 10))
        b = speech_raw(self.srv.port, {"model": "tiny", "input": LONG, "response_format": "pcm"})
        self.assertIsNotNone(wait_for(lambda: self.srv.metrics()["chatterbox_queue_depth"] == 1, 10))
        t0 = time.monotonic()
        st, hdr, data = self.speech()
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertError((st, hdr, data), 503, "overloaded")
        self.assertGreaterEqual(int(hdr["retry-after"]), 1)
        st, _, data = self.srv.request("GET", "/health")  # the loop still answers
        self.assertEqual(json.loads(data)["queued"], 1)
        ws = WebSocket(self.srv.port, "/v1/audio/speech/stream")
        ws.send_text(json.dumps({"model": "tiny"}))
        self.assertEqual(json.loads(ws.recv()[1])["error"]["code"], "overloaded")
        ws.close()
        a.close()
        b.close()

    def test_metrics(self):
        self.speech(response_format="pcm")
        st, hdr, data = self.srv.request("GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(hdr["content-type"].startswith("text/plain"))
        text = data.decode()
        for name in ["chatterbox_requests_total", "chatterbox_errors_total", "chatterbox_queue_depth",
                     "chatterbox_time_to_first_byte_seconds_bucket", "chatterbox_real_time_factor_count",
                     "process_resident_memory_bytes"]:
            self.assertIn(name, text)
        m = self.srv.metrics()
        self.assertGreaterEqual(m["chatterbox_time_to_first_byte_seconds_count"], 1)
        self.assertGreater(m["chatterbox_real_time_factor_sum"], 0)


class TimeLimitTest(unittest.TestCase):
    def test_time_limit(self):
        tmp = tempfile.mkdtemp(prefix="cbx-server-")
        try:
            model = make_model_dir(FIXTURES, os.path.join(tmp, "model"))
            srv = Server(BINARY, model_args("tiny", model, FIXTURES) + ["--timeout", "1.5"])
            try:
                t0 = time.monotonic()
                s = speech_raw(srv.port, {"model": "tiny", "input": LONG, "response_format": "pcm"})
                got = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                took = time.monotonic() - t0
                s.close()
                if got.startswith(b"HTTP/1.1 200"):
                    # Audio had started: the stream is cut (no terminating zero-length chunk).
                    self.assertFalse(got.endswith(b"0\r\n\r\n"))
                else:
                    self.assertTrue(got.startswith(b"HTTP/1.1 504"), got[:100])
                    self.assertIn(b'"code":"timeout"', got)
                print(f"time limit 1.5 s: answered after {took:.2f} s ({got[:12].decode()})")
                self.assertLess(took, 4.5)
                self.assertEqual(srv.metrics()["chatterbox_timeouts_total"], 1)
            finally:
                srv.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_sigterm_while_synthesising(self):
        tmp = tempfile.mkdtemp(prefix="cbx-server-")
        try:
            model = make_model_dir(FIXTURES, os.path.join(tmp, "model"))
            srv = Server(BINARY, model_args("tiny", model, FIXTURES) + ["--queue", "2"])
            socks = [speech_raw(srv.port, {"model": "tiny", "input": LONG, "response_format": "pcm"}) for _ in range(3)]
            self.assertIsNotNone(wait_for(lambda: srv.metrics()["chatterbox_queue_depth"] == 2, 10))
            t0 = time.monotonic()
            srv.proc.terminate()
            rc = srv.proc.wait(10)
            print(f"SIGTERM with 1 running + 2 queued: exit {rc} after {time.monotonic() - t0:.2f} s")
            self.assertEqual(rc, 0)
            for s_ in socks:
                s_.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_cloned_voice_from_recording(self):
        # POST /v1/voices with a reference recording, then speak with it: the
        # clone-voice example's model directory (tests/pipelines), whose greedy
        # run on this recording and sentence gives 50 tokens -> 100 frames.
        import subprocess
        tmp = tempfile.mkdtemp(prefix="cbx-server-")
        try:
            model = os.path.join(tmp, "model")
            root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            subprocess.run([sys.executable, os.path.join(root, "tests/pipelines/make-voice-model-dir.py"), FIXTURES, model],
                           check=True)
            srv = Server(BINARY, model_args("clone", model, FIXTURES) + ["--voices-dir", os.path.join(tmp, "v")])
            try:
                with open(os.path.join(FIXTURES, "clone/ref_24k.wav"), "rb") as f:
                    wav = f.read()
                boundary = "b0undary"
                body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"me.wav\"\r\n"
                        f"Content-Type: audio/wav\r\n\r\n").encode() + wav + f"\r\n--{boundary}--\r\n".encode()
                st, _, data = srv.request("POST", "/v1/voices", body,
                                          {"Content-Type": f"multipart/form-data; boundary={boundary}"})
                self.assertEqual(st, 201, data)
                v = json.loads(data)
                self.assertEqual(v["kind"], "wav")
                st, _, pcm = srv.request("POST", "/v1/audio/speech", {"model": "clone", "input": SENTENCE,
                                                                      "voice": v["id"], "response_format": "pcm"})
                self.assertEqual((st, len(pcm)), (200, 100 * 480 * 2))
            finally:
                srv.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_garbage_does_not_crash(self):
        tmp = tempfile.mkdtemp(prefix="cbx-server-")
        try:
            model = make_model_dir(FIXTURES, os.path.join(tmp, "model"))
            srv = Server(BINARY, model_args("tiny", model, FIXTURES) + ["--voices-dir", os.path.join(tmp, "v")])
            try:
                bodies = ["[" * 5000 + "]" * 5000, '{"model": "tiny", "input": "a\\u0000b."}',
                          '{"model": "tiny", "input": "\\ud800"}', b'{"model": "tiny", "input": "\xff\xfe"}',
                          '{"model": "tiny", "input": "x", "speed": 1e400}', '{"model": null, "input": null}',
                          '{"model": "tiny", "input": ' + '"' + "." * 999 + '"}', "", "null", '"str"']
                for b in bodies:
                    st, _, data = srv.request("POST", "/v1/audio/speech", b)
                    self.assertTrue(st == 200 or 400 <= st < 500, (st, data[:200], str(b)[:60]))
                for b in [b"", b"\x00" * 100, b"--x\r\n\r\n"]:
                    st, _, _ = srv.request("POST", "/v1/voices", b, {"Content-Type": "multipart/form-data; boundary=x"})
                    self.assertEqual(st, 400)
                # raw junk on the socket
                for junk in [b"\x16\x03\x01\x02\x00" + os.urandom(300), b"GET / HTTP/9.9\r\n\r\n", os.urandom(2000)]:
                    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                    s.sendall(junk)
                    try:
                        s.recv(100)
                    except OSError:
                        pass
                    s.close()
                self.assertEqual(srv.request("GET", "/health")[0], 200)
                self.assertIsNone(srv.proc.poll())
            finally:
                srv.stop()
            self.assertEqual(srv.proc.returncode, 0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_flags(self):
        import subprocess
        r = subprocess.run([BINARY, "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        for flag in ["--listen", "--model", "--voices-dir", "--workers", "--queue", "--config"]:
            self.assertIn(flag, r.stdout)
        r = subprocess.run([BINARY, "--model", "x"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("NAME=DIR", r.stderr)
        r = subprocess.run([BINARY], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)

    def test_config_file(self):
        tmp = tempfile.mkdtemp(prefix="cbx-server-")
        try:
            model = make_model_dir(FIXTURES, os.path.join(tmp, "model"))
            conf = os.path.join(tmp, "server.conf")
            with open(conf, "w") as f:
                f.write(f"[server]\nworkers=3\nqueue=7\n[model cfgmodel]\ndir={model}\nvocoder=hift\n"
                        f"hift-model={FIXTURES}/hift/hift_tiny.safetensors\ngreedy=true\n")
            srv = Server(BINARY, ["--config", conf])
            try:
                h = json.loads(srv.request("GET", "/health")[2])
                self.assertEqual((h["workers"], h["queue_capacity"]), (3, 7))
                st, _, data = srv.request("POST", "/v1/audio/speech",
                                          {"model": "cfgmodel", "input": SENTENCE, "response_format": "pcm"})
                self.assertEqual((st, len(data)), (200, 30 * 480 * 2))
            finally:
                srv.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
