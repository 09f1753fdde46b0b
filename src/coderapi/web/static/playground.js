// Playground: streams /v1/chat/completions with fetch + ReadableStream, and shows the request as code.
// Key handling: the secret comes from this tab's sessionStorage (put there by the keys page or by
// pasting) and goes only to this server's /v1 API as a bearer token; the dashboard never stores it.
(function () {
  "use strict";
  const KEYS = "coderapi.playgroundKeys";
  const PASTE = "__paste";
  const KEY_SHAPE = /^cdr-[0-9A-Za-z]{40}$/;
  const config = JSON.parse(document.getElementById("playground-config").textContent);
  const $ = (id) => document.getElementById(id);
  const el = {
    keySelect: $("pg-key-select"), key: $("pg-key"), pasteWrap: $("pg-paste-wrap"), remember: $("pg-remember"),
    keyHint: $("pg-key-hint"), model: $("pg-model"), system: $("pg-system"), maxTokens: $("pg-max_tokens"),
    stop: $("pg-stop"), seed: $("pg-seed"), messages: $("pg-messages"), empty: $("pg-empty"), form: $("pg-form"),
    input: $("pg-input"), send: $("pg-send"), stopBtn: $("pg-stop-btn"), status: $("pg-status"),
    clear: $("pg-clear"), python: $("pg-code-python"), curl: $("pg-code-curl"),
  };
  const sliders = ["temperature", "top_p", "presence_penalty", "frequency_penalty"];
  const history = [];
  const EXAMPLE = "Write a Python function that reverses a string.";
  let controller = null;
  let lastMessages = null; // the messages of the request last sent, shown as code while the composer is empty

  function savedKeys() {
    try { return JSON.parse(sessionStorage.getItem(KEYS) || "[]"); } catch (e) { return []; }
  }

  function remember(secret) {
    const prefix = secret.slice(4, 12);
    const known = config.keys.find((k) => k.prefix === prefix);
    const saved = savedKeys().filter((k) => k.prefix !== prefix);
    saved.unshift({ prefix: prefix, name: known ? known.name : "", secret: secret });
    sessionStorage.setItem(KEYS, JSON.stringify(saved));
    renderKeySelect(prefix);
  }

  function renderKeySelect(preferred) {
    const saved = savedKeys();
    el.keySelect.textContent = "";
    saved.forEach((k) => {
      const option = new Option((k.name ? k.name + " · " : "") + k.prefix + "…", k.prefix);
      el.keySelect.add(option);
    });
    el.keySelect.add(new Option("Paste a key…", PASTE));
    const wanted = preferred && saved.some((k) => k.prefix === preferred) ? preferred : (saved[0] || {}).prefix;
    el.keySelect.value = wanted || PASTE;
    syncPaste();
  }

  function syncPaste() {
    el.pasteWrap.hidden = el.keySelect.value !== PASTE;
  }

  function currentSecret() {
    if (el.keySelect.value === PASTE) return el.key.value.trim();
    const found = savedKeys().find((k) => k.prefix === el.keySelect.value);
    return found ? found.secret : "";
  }

  function checkPasted() {
    const secret = el.key.value.trim();
    el.keyHint.classList.remove("warn");
    if (!secret) { el.keyHint.textContent = "Paste one of your inference keys. It stays in this browser: the server never stores secrets."; return; }
    if (!KEY_SHAPE.test(secret)) { el.keyHint.textContent = "That does not look like a coderapi key (cdr-…, 44 characters)."; el.keyHint.classList.add("warn"); return; }
    const known = config.keys.find((k) => k.prefix === secret.slice(4, 12));
    el.keyHint.textContent = known ? "Your key " + secret.slice(4, 12) + "…" + (known.name ? " (" + known.name + ")" : "") + "." : "Not one of your active inference keys: the API may refuse it.";
    if (!known) el.keyHint.classList.add("warn");
  }

  function modelDefaults() {
    const model = config.models.find((m) => m.id === el.model.value) || config.models[0];
    return (model && model.defaults) || {};
  }

  function applyDefaults() {
    const d = modelDefaults();
    $("pg-temperature").value = d.temperature != null ? d.temperature : 0.7;
    $("pg-top_p").value = d.top_p != null ? d.top_p : 1;
    el.maxTokens.value = d.max_tokens || 512;
    sliders.forEach(showSlider);
  }

  function showSlider(name) {
    $("pg-" + name + "-out").textContent = Number($("pg-" + name).value).toFixed(2).replace(/0$/, "");
  }

  function conversation(pending) {
    const messages = [];
    if (el.system.value.trim()) messages.push({ role: "system", content: el.system.value.trim() });
    history.forEach((m) => messages.push({ role: m.role, content: m.content }));
    messages.push({ role: "user", content: pending });
    return messages;
  }

  function requestBody(messages) {
    const body = { model: el.model.value, messages: messages };
    body.temperature = Number($("pg-temperature").value);
    body.top_p = Number($("pg-top_p").value);
    if (el.maxTokens.value) body.max_tokens = parseInt(el.maxTokens.value, 10);
    ["presence_penalty", "frequency_penalty"].forEach((n) => { const v = Number($("pg-" + n).value); if (v) body[n] = v; });
    const stops = el.stop.value.split(",").map((s) => s.trim()).filter(Boolean).slice(0, 4);
    if (stops.length) body.stop = stops;
    if (el.seed.value !== "") body.seed = parseInt(el.seed.value, 10);
    body.stream = true;
    body.stream_options = { include_usage: true };
    return body;
  }

  const py = (v) => JSON.stringify(v, null, 4).replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None");

  function renderCode() {
    const text = el.input.value.trim();
    const body = requestBody(text || !lastMessages ? conversation(text || EXAMPLE) : lastMessages);
    const base = window.location.origin;
    const args = Object.keys(body).filter((k) => k !== "stream_options").map((k) =>
      "    " + k + "=" + (k === "stream" ? "True" : py(body[k]).replace(/\n/g, "\n    ")) + ",");
    el.python.textContent = [
      "import os", "from openai import OpenAI", "",
      "client = OpenAI(", '    base_url="' + base + '/v1",', '    api_key=os.environ["CODERAPI_API_KEY"],', ")", "",
      "stream = client.chat.completions.create(", ...args, "    stream_options={\"include_usage\": True},", ")",
      "for chunk in stream:", "    if chunk.choices and chunk.choices[0].delta.content:",
      '        print(chunk.choices[0].delta.content, end="", flush=True)',
    ].join("\n");
    const json = JSON.stringify(body, null, 2).replace(/'/g, "'\\''");
    el.curl.textContent = "curl -N " + base + "/v1/chat/completions \\\n" +
      '  -H "Authorization: Bearer $CODERAPI_API_KEY" \\\n' +
      '  -H "Content-Type: application/json" \\\n' + "  -d '" + json + "'";
  }

  // Messages: text, with ``` fences shown as code blocks (built with textContent: no HTML injection).
  function fill(node, text) {
    node.textContent = "";
    text.split("```").forEach((part, i) => {
      if (i % 2 === 1) {
        const pre = document.createElement("pre");
        const code = document.createElement("code");
        code.textContent = part.replace(/^[\w+-]*\n/, "");
        pre.appendChild(code);
        node.appendChild(pre);
      } else if (part) {
        const span = document.createElement("span");
        span.textContent = part;
        node.appendChild(span);
      }
    });
  }

  function addMessage(role, text) {
    el.empty.hidden = true;
    const wrap = document.createElement("div");
    wrap.className = "msg msg-" + role;
    const who = document.createElement("div");
    who.className = "msg-role";
    who.textContent = role === "user" ? "You" : role === "assistant" ? el.model.value : "Error";
    const body = document.createElement("div");
    body.className = "msg-body";
    fill(body, text);
    wrap.append(who, body);
    el.messages.appendChild(wrap);
    el.messages.scrollTop = el.messages.scrollHeight;
    return body;
  }

  function busy(on) {
    el.send.disabled = on;
    el.stopBtn.hidden = !on;
  }

  async function errorText(response) {
    try {
      const data = await response.json();
      if (data && data.error) return data.error.message + (data.error.code ? " (" + data.error.code + ")" : "");
    } catch (e) { /* not JSON */ }
    return "HTTP " + response.status;
  }

  async function readStream(response, onDelta) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", usage = null, finish = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const payload = line.slice(5).trim();
          if (payload === "[DONE]") return { usage, finish };
          const chunk = JSON.parse(payload);
          if (chunk.error) throw new Error(chunk.error.message);
          if (chunk.usage) usage = chunk.usage;
          const choice = (chunk.choices || [])[0];
          if (choice && choice.delta && choice.delta.content) onDelta(choice.delta.content);
          if (choice && choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
    return { usage, finish };
  }

  async function send(text) {
    const secret = currentSecret();
    if (!secret) { addMessage("error", "Choose or paste an API key first."); return; }
    const body = requestBody(conversation(text));
    lastMessages = body.messages;
    addMessage("user", text);
    el.input.value = "";
    const target = addMessage("assistant", "");
    target.classList.add("typing");
    let answer = "";
    const started = performance.now();
    controller = new AbortController();
    busy(true);
    el.status.textContent = "Waiting for the first token…";
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST", signal: controller.signal,
        headers: {
          "Authorization": "Bearer " + secret, "Content-Type": "application/json",
          "X-Client-Request-Id": "playground-" + Date.now().toString(36),
        },
        body: JSON.stringify(body),
      });
      if (!response.ok) throw new Error(await errorText(response));
      if (el.keySelect.value === PASTE && el.remember.checked) remember(secret);
      el.status.textContent = "Streaming…";
      const result = await readStream(response, (delta) => { answer += delta; fill(target, answer); el.messages.scrollTop = el.messages.scrollHeight; });
      history.push({ role: "user", content: text }, { role: "assistant", content: answer });
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const tokens = result.usage ? result.usage.prompt_tokens + " in · " + result.usage.completion_tokens + " out · " : "";
      el.status.textContent = tokens + seconds + " s" + (result.finish ? " · " + result.finish : "");
    } catch (error) {
      target.parentElement.remove();
      if (error.name === "AbortError") {
        el.status.textContent = "Stopped.";
        if (answer) { addMessage("assistant", answer); history.push({ role: "user", content: text }, { role: "assistant", content: answer }); }
      } else {
        addMessage("error", error.message);
        el.status.textContent = "";
      }
    } finally {
      target.classList.remove("typing");
      controller = null;
      busy(false);
      renderCode();
    }
  }

  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = el.input.value.trim();
    if (text && !controller) send(text);
  });
  el.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); el.form.requestSubmit(); }
  });
  el.stopBtn.addEventListener("click", () => { if (controller) controller.abort(); });
  el.clear.addEventListener("click", () => {
    history.length = 0;
    lastMessages = null;
    el.messages.querySelectorAll(".msg").forEach((m) => m.remove());
    el.empty.hidden = false;
    el.status.textContent = "";
    renderCode();
  });
  el.keySelect.addEventListener("change", syncPaste);
  el.key.addEventListener("input", checkPasted);
  el.model.addEventListener("change", () => { applyDefaults(); renderCode(); });
  sliders.forEach((name) => $("pg-" + name).addEventListener("input", () => showSlider(name)));
  document.querySelector(".pg-settings").addEventListener("input", renderCode);
  el.input.addEventListener("input", renderCode);

  renderKeySelect(new URLSearchParams(window.location.search).get("key"));
  applyDefaults();
  renderCode();
})();
