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

  // Topic suggestions: a listbox under the text area, for the topic the caret is in, each with how many
  // recent papers mention it; and under the box, that count for every topic typed so far.
  var box = document.querySelector("textarea[data-suggest]");
  var list = document.getElementById("topic-suggestions");
  var status = document.getElementById("topic-suggestions-status");
  if (!box || !list || !window.fetch) return;
  var endpoint = box.getAttribute("data-suggest");
  var matchesEndpoint = box.getAttribute("data-matches");
  var matchesRegion = document.getElementById("topic-matches");
  var matchesTimer = null;
  var matchesAsked = 0;
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
    var inserted = spacer + items[index].topic + (tail ? "" : ", ");
    box.value = head + inserted + tail;
    var position = (head + inserted).length;
    box.focus();
    box.setSelectionRange(position, position);
    status.textContent = items[index].topic + " added.";
    close();
    askMatches();
  }

  function papersText(count) {
    return count + (count === 1 ? " paper" : " papers");
  }

  function show(suggestions) {
    close();
    var already = box.value.toLowerCase().split(separators).map(function (t) { return t.trim(); });
    items = suggestions.filter(function (s) { return already.indexOf(s.topic.toLowerCase()) < 0; });
    if (!items.length) {
      status.textContent = "";
      return;
    }
    items.forEach(function (item, index) {
      var option = document.createElement("li");
      option.id = "topic-suggestion-" + index;
      option.setAttribute("role", "option");
      option.setAttribute("aria-selected", "false");
      option.setAttribute("aria-label", item.topic + ", " + papersText(item.papers) + " recently");
      // The count is drawn by the stylesheet from this attribute, so the option's text is the topic alone.
      option.setAttribute("data-papers", papersText(item.papers));
      option.textContent = item.topic;
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

  // The topics typed so far, each once; while the box has the focus, not the one still being typed.
  function typedTopics() {
    var seen = [];
    var topics = [];
    var value = box.value;
    if (document.activeElement === box && !/[,;\n]\s*$/.test(value.slice(0, box.selectionStart))) {
      var current = typedTopic().toLowerCase();
      value = value.split(separators).filter(function (t) { return t.trim().toLowerCase() !== current; }).join(",");
    }
    value.split(separators).forEach(function (raw) {
      var topic = raw.replace(/\s+/g, " ").trim();
      if (topic && topic.length <= 100 && seen.indexOf(topic.toLowerCase()) < 0) {
        seen.push(topic.toLowerCase());
        topics.push(topic);
      }
    });
    return topics.slice(0, 20);
  }

  function showMatches(matches, size) {
    matchesRegion.textContent = "";
    if (!matches.length) return;
    var intro = document.createElement("p");
    intro.className = "hint";
    intro.textContent = "How many of the latest " + Number(size).toLocaleString("en") + " papers mention each topic:";
    var entries = document.createElement("ul");
    matches.forEach(function (match) {
      var entry = document.createElement("li");
      if (match.papers > 0) {
        var name = document.createElement("span");
        name.className = "topic";
        name.textContent = match.topic;
        entry.appendChild(name);
        entry.appendChild(document.createTextNode(": " + papersText(match.papers)));
      } else {
        entry.className = "no-match";
        entry.textContent = "No recent paper mentions \u201c" + match.topic +
          "\u201d yet: you'll get papers on it once some arrive.";
      }
      entries.appendChild(entry);
    });
    matchesRegion.appendChild(intro);
    matchesRegion.appendChild(entries);
  }

  function askMatches() {
    if (!matchesEndpoint || !matchesRegion) return;
    var topics = typedTopics();
    var ticket = ++matchesAsked;
    if (!topics.length) {
      showMatches([], 0);
      return;
    }
    var query = topics.map(function (t) { return "topic=" + encodeURIComponent(t); }).join("&");
    fetch(matchesEndpoint + "?" + query, { headers: { Accept: "application/json" }, credentials: "omit" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body && ticket === matchesAsked) showMatches(body.topics || [], body.window);
      })
      .catch(function () { /* the counts are a help, not a condition: keep what is shown */ });
  }

  box.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(ask, 250);
    clearTimeout(matchesTimer);
    matchesTimer = setTimeout(askMatches, 700);
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
    clearTimeout(matchesTimer);
    askMatches();
  });
})();
