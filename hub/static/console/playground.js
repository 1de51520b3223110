/* The playground: a chat with one of the tenant's models, tokens streaming in as server-sent events from
   the console's relay (same request path as the API: entitlements, limits, metering). No framework. */
(function () {
  "use strict";
  var root = document.getElementById("playground");
  if (!root) { return; }
  var $ = function (id) { return document.getElementById(id); };
  var log = $("pg-log"), form = $("pg-form"), input = $("pg-input"), status = $("pg-status");
  var send = $("pg-send"), stop = $("pg-stop"), temperature = $("pg-temperature");
  var history = [];
  var controller = null;

  function bubble(role, text) {
    var item = document.createElement("li");
    item.className = "msg " + role;
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : role === "assistant" ? $("pg-model").value : "Error";
    var body = document.createElement("div");
    body.className = "body";
    body.textContent = text;
    item.appendChild(who);
    item.appendChild(body);
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    return body;
  }

  function busy(on) {
    send.disabled = on;
    stop.hidden = !on;
    input.disabled = on;
  }

  function errorText(payload, fallback) {
    return (payload && payload.error && payload.error.message) || fallback;
  }

  async function chat(text) {
    history.push({ role: "user", content: text });
    bubble("user", text);
    var out = bubble("assistant", "");
    out.classList.add("typing");
    var messages = history.slice();
    var system = $("pg-system").value.trim();
    if (system) { messages.unshift({ role: "system", content: system }); }
    var started = performance.now();
    var tokens = 0;
    var usage = null;
    controller = new AbortController();
    busy(true);
    status.textContent = "Waiting for the first token…";
    try {
      var response = await fetch(root.dataset.endpoint, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json", "Accept": "text/event-stream", "X-CSRFToken": root.dataset.csrf
        },
        body: JSON.stringify({
          model: $("pg-model").value,
          messages: messages,
          stream: true,
          stream_options: { include_usage: true },
          max_tokens: parseInt($("pg-max").value, 10) || 128,
          temperature: parseFloat(temperature.value)
        }),
        signal: controller.signal
      });
      if (!response.ok) {
        var payload = await response.json().catch(function () { return null; });
        throw new Error(errorText(payload, "The hub answered " + response.status + "."));
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) { break; }
        buffer += decoder.decode(chunk.value, { stream: true });
        var events = buffer.split("\n\n");
        buffer = events.pop();
        events.forEach(function (event) {
          var line = event.trim();
          if (line.indexOf("data:") !== 0) { return; }
          var data = line.slice(5).trim();
          if (data === "[DONE]") { return; }
          var message = JSON.parse(data);
          if (message.error) { throw new Error(errorText(message, "The stream failed.")); }
          if (message.usage) { usage = message.usage; }
          var choice = message.choices && message.choices[0];
          if (choice && choice.delta && choice.delta.content) {
            out.textContent += choice.delta.content;
            tokens += 1;
            status.textContent = tokens + " chunks…";
            log.scrollTop = log.scrollHeight;
          }
        });
      }
      history.push({ role: "assistant", content: out.textContent });
      var seconds = (performance.now() - started) / 1000;
      status.textContent = usage
        ? usage.prompt_tokens + " prompt + " + usage.completion_tokens + " completion tokens in " + seconds.toFixed(1) + " s"
        : "Done in " + seconds.toFixed(1) + " s";
    } catch (error) {
      if (error.name === "AbortError") {
        status.textContent = "Stopped.";
        history.push({ role: "assistant", content: out.textContent });
      } else {
        out.parentNode.remove();
        history.pop();
        bubble("error", error.message);
        status.textContent = "";
      }
    } finally {
      out.classList.remove("typing");
      controller = null;
      busy(false);
      input.focus();
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || controller) { return; }
    input.value = "";
    chat(text);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener("click", function () { if (controller) { controller.abort(); } });
  $("pg-clear").addEventListener("click", function () {
    if (controller) { controller.abort(); }
    history = [];
    log.textContent = "";
    status.textContent = "";
  });
  temperature.addEventListener("input", function () { $("pg-temperature-value").textContent = temperature.value; });
})();
