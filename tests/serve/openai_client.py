"""The `mamba-wgpu serve` server through the official `openai` client, as an app would use it.

Run by tests/serve.rs, which starts the server on 127.0.0.1 and passes:
  argv[1]  the server's base URL (http://127.0.0.1:PORT/v1)
  argv[2]  the model id it serves
  argv[3]  what `mamba-wgpu generate --prompt "ROMEO:" --max-tokens 20 --greedy` prints
Every check prints `ok - ...`; the first failure raises (exit code 1).
"""
import json
import sys
import threading
import time
import urllib.error
import urllib.request

import openai

BASE, MODEL, GREEDY_TEXT = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=BASE, api_key="unused", timeout=300, max_retries=0)
# temperature 0 with every filter off is `generate --greedy`.
GREEDY = {"temperature": 0, "extra_body": {"repetition_penalty": 1, "top_k": 0, "min_p": 0}}


def check(name, ok, detail=""):
    if not ok:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok - {name}")


def health():
    with urllib.request.urlopen(BASE.removesuffix("/v1") + "/health", timeout=10) as r:
        return json.load(r)


def post_raw(path, body, content_type="application/json"):
    request = urllib.request.Request(BASE + path, data=body, headers={"content-type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


models = [m.id for m in client.models.list().data]
check("GET /v1/models lists the model", models == [MODEL], models)

# Completions, not streamed and streamed: generate --greedy's text.
done = client.completions.create(model=MODEL, prompt="ROMEO:", max_tokens=20, **GREEDY)
check("completion equals generate --greedy", done.choices[0].text == GREEDY_TEXT.removesuffix("\n"), repr(done.choices[0].text))
check("completion usage", done.usage.prompt_tokens > 0 and done.usage.completion_tokens == 20, done.usage)
pieces = [c.choices[0].text for c in client.completions.create(model=MODEL, prompt="ROMEO:", max_tokens=20, stream=True, **GREEDY)]
check("streamed completion equals the whole one", "".join(pieces) == done.choices[0].text and len(pieces) > 1, pieces)
again = client.completions.create(model=MODEL, prompt="ROMEO:", max_tokens=20, **GREEDY)
cached = again.usage.prompt_tokens_details.cached_tokens
check("a repeated prompt prefills only its last token", cached == again.usage.prompt_tokens - 1, again.usage)
check("a cache hit changes no greedy token", again.choices[0].text == done.choices[0].text, again.choices[0].text)

# Chat: the plain transcript (this model has no chat template); a follow-up turn hits the cache.
turn1 = [{"role": "user", "content": "ROMEO:"}]
reply = client.chat.completions.create(model=MODEL, messages=turn1, max_tokens=12, **GREEDY)
text = reply.choices[0].message.content
check("chat reply", reply.choices[0].message.role == "assistant" and len(text) > 0, reply)
stream = client.chat.completions.create(model=MODEL, messages=turn1, max_tokens=12, stream=True, stream_options={"include_usage": True}, **GREEDY)
chunks = list(stream)
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("streamed chat equals the whole reply", streamed == text, repr(streamed))
check("streamed chat ends with its usage", chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12, chunks[-1])
turn2 = turn1 + [{"role": "assistant", "content": text}, {"role": "user", "content": "JULIET:"}]
follow = client.chat.completions.create(model=MODEL, messages=turn2, max_tokens=8, **GREEDY)
cached = follow.usage.prompt_tokens_details.cached_tokens
check("a follow-up turn reports cached tokens", cached >= reply.usage.prompt_tokens, follow.usage)

# Two streams at once interleave their tokens (not one request after the other).
arrivals = []
def run(name):
    for _ in client.completions.create(model=MODEL, prompt=name, max_tokens=24, stream=True, **GREEDY):
        arrivals.append((time.monotonic(), name))
threads = [threading.Thread(target=run, args=(n,)) for n in ("ROMEO:", "JULIET:")]
for t in threads:
    t.start()
for t in threads:
    t.join()
order = [n for _, n in sorted(arrivals)]
switches = sum(1 for a, b in zip(order, order[1:]) if a != b)
check("two concurrent streams interleave", switches >= 3, "".join("R" if n == "ROMEO:" else "J" for n in order))

# Requests running together decode in one batched session: a seeded, sampled request gives the
# same text next to another one as alone.
def sampled(prompt, seed):
    return client.completions.create(model=MODEL, prompt=prompt, max_tokens=16, temperature=1.0, seed=seed).choices[0].text
requests = [("ROMEO:", 11), ("JULIET:", 12)]
alone = [sampled(p, s) for p, s in requests]
together = [None, None]
threads = [threading.Thread(target=lambda i=i, p=p, s=s: together.__setitem__(i, sampled(p, s))) for i, (p, s) in enumerate(requests)]
for t in threads:
    t.start()
for t in threads:
    t.join()
check("batched sampled requests give the texts they give alone", together == alone, f"{together} vs {alone}")

# Bad requests: OpenAI-style errors, 4xx.
for name, call, expected in [
    ("an unknown model is 404", lambda: client.completions.create(model="gpt-4", prompt="x", max_tokens=1), openai.NotFoundError),
    ("a negative temperature is 400", lambda: client.completions.create(model=MODEL, prompt="x", temperature=-1), openai.BadRequestError),
    ("top_p above 1 is 400", lambda: client.chat.completions.create(model=MODEL, messages=turn1, top_p=1.5), openai.BadRequestError),
    ("a prompt over the length limit is 400", lambda: client.completions.create(model=MODEL, prompt="ROMEO: " * 400, max_tokens=1), openai.BadRequestError),
    ("no messages is 400", lambda: client.chat.completions.create(model=MODEL, messages=[]), openai.BadRequestError),
]:
    try:
        call()
        check(name, False, "no error")
    except expected as e:
        check(name, isinstance(e.body, dict) and "message" in e.body, e.body)
status, body = post_raw("/completions", b"{not json")
check("invalid JSON is 400 with an error body", status == 400 and "error" in body, (status, body))
status, body = post_raw("/completions", b'{"prompt": "' + b"x" * 300_000 + b'"}')
check("a body over the size limit is 413", status == 413 and "error" in body, (status, body))

# A client that disconnects stops its generation.
stream = client.completions.create(model=MODEL, prompt="ROMEO:", max_tokens=4000, stream=True)
next(iter(stream))
check("the long run is generating", health()["generating"] >= 1, health())
stream.close()
deadline = time.monotonic() + 30
while health()["generating"] > 0 and time.monotonic() < deadline:
    time.sleep(0.2)
check("a disconnected client's generation stops", health()["generating"] == 0, health())
after = client.completions.create(model=MODEL, prompt="ROMEO:", max_tokens=20, **GREEDY)
check("the server still answers after all that", after.choices[0].text == done.choices[0].text, after.choices[0].text)
print("openai client: all checks passed")
