// Progressive enhancement for the subscribe and settings forms; each works without this script.
(function () {
  "use strict";

  // The browser's time zone, for a form that otherwise posts the server's default.
  var zoneInput = document.querySelector("input[data-browser-timezone]");
  if (zoneInput) {
    try {
      var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (zone) {
        zoneInput.value = zone;
        var zoneLabel = document.getElementById("timezone-label");
        if (zoneLabel) zoneLabel.textContent = zone;
      }
    } catch (ignored) {
      // An old browser keeps the server's default.
    }
  }

  // The weekday only matters for weekly digests.
  var weeklyOnly = document.querySelectorAll("[data-weekly-only]");
  var cadences = document.querySelectorAll("input[name=cadence]");
  function showWeekday() {
    var weekly = false;
    cadences.forEach(function (radio) {
      if (radio.checked && radio.value === "weekly") weekly = true;
    });
    weeklyOnly.forEach(function (element) { element.hidden = !weekly; });
  }
  if (weeklyOnly.length && cadences.length) {
    cadences.forEach(function (radio) { radio.addEventListener("change", showWeekday); });
    showWeekday();
  }

  // Topic suggestions: a listbox under the text area, for the topic the caret is in.
  var box = document.querySelector("textarea[data-suggest]");
  var list = document.getElementById("topic-suggestions");
  var status = document.getElementById("topic-suggestions-status");
  if (!box || !list || !window.fetch) return;
  var endpoint = box.getAttribute("data-suggest");
  var separators = /[,;\n]/;
  var items = [];
  var active = -1;
  var timer = null;
  var asked = 0;

  function typedTopic() {
    var before = box.value.slice(0, box.selectionStart);
    var match = before.match(/[^,;\n]*$/);
    return (match ? match[0] : "").trim();
  }

  function close() {
    items = [];
    active = -1;
    list.hidden = true;
    list.textContent = "";
    box.removeAttribute("aria-activedescendant");
  }

  function highlight(index) {
    active = index;
    Array.prototype.forEach.call(list.children, function (option, i) {
      option.setAttribute("aria-selected", i === index ? "true" : "false");
    });
    if (index >= 0) {
      box.setAttribute("aria-activedescendant", list.children[index].id);
      list.children[index].scrollIntoView({ block: "nearest" });
    } else {
      box.removeAttribute("aria-activedescendant");
    }
  }

  function choose(index) {
    var caret = box.selectionStart;
    var before = box.value.slice(0, caret);
    var after = box.value.slice(caret);
    var head = before.replace(/[^,;\n]*$/, "");
    var tail = after.replace(/^[^,;\n]*/, "");
    var spacer = head && !/\s$/.test(head) ? " " : "";
    var inserted = spacer + items[index] + (tail ? "" : ", ");
    box.value = head + inserted + tail;
    var position = (head + inserted).length;
    box.focus();
    box.setSelectionRange(position, position);
    status.textContent = items[index] + " added.";
    close();
  }

  function show(suggestions) {
    close();
    var already = box.value.toLowerCase().split(separators).map(function (t) { return t.trim(); });
    items = suggestions.filter(function (s) { return already.indexOf(s.toLowerCase()) < 0; });
    if (!items.length) {
      status.textContent = "";
      return;
    }
    items.forEach(function (text, index) {
      var option = document.createElement("li");
      option.id = "topic-suggestion-" + index;
      option.setAttribute("role", "option");
      option.setAttribute("aria-selected", "false");
      option.textContent = text;
      // mousedown, not click: keep the focus (and the caret) in the text area.
      option.addEventListener("mousedown", function (event) {
        event.preventDefault();
        choose(index);
      });
      list.appendChild(option);
    });
    list.hidden = false;
    status.textContent = items.length + (items.length === 1 ? " suggestion" : " suggestions") +
      ": use the down and up arrows, then Enter to add one.";
  }

  function ask() {
    var typed = typedTopic();
    if (typed.length < 2) {
      close();
      return;
    }
    var ticket = ++asked;
    fetch(endpoint + "?q=" + encodeURIComponent(typed), {
      headers: { Accept: "application/json" },
      credentials: "omit",
    })
      .then(function (response) { return response.ok ? response.json() : { suggestions: [] }; })
      .then(function (body) {
        if (ticket === asked && document.activeElement === box) show(body.suggestions || []);
      })
      .catch(function () { close(); });
  }

  box.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(ask, 250);
  });
  box.addEventListener("keydown", function (event) {
    if (list.hidden || !items.length) return;
    if (event.key === "ArrowDown") {
      event.preventDefault();
      highlight((active + 1) % items.length);
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      highlight(active <= 0 ? items.length - 1 : active - 1);
    } else if (event.key === "Enter" && active >= 0) {
      event.preventDefault();
      choose(active);
    } else if (event.key === "Escape") {
      event.preventDefault();
      close();
    }
  });
  box.addEventListener("blur", function () {
    clearTimeout(timer);
    close();
  });
})();
