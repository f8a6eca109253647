// Votes on a digest's page without leaving it; every form also works as a plain POST without this script.
(function () {
  "use strict";
  if (!window.fetch || !window.FormData) return;
  var live = document.getElementById("vote-live");
  var undoForm = document.getElementById("undo-form");
  var undoTemplate = document.getElementById("undo-template");
  var words = { more: "More like this", less: "Less like this" };

  function show(form, vote) {
    form.querySelectorAll("button[name=vote]").forEach(function (button) {
      var kind = button.classList.contains("vote-more") ? "more" : "less";
      var pressed = vote === kind;
      button.setAttribute("aria-pressed", pressed ? "true" : "false");
      button.value = pressed ? "clear" : kind;
    });
  }

  function post(form, fields) {
    var body = new FormData(form);
    Object.keys(fields).forEach(function (name) { body.set(name, fields[name]); });
    return fetch(form.action, {
      method: "POST", body: body, credentials: "same-origin", headers: { Accept: "application/json" }
    }).then(function (response) {
      if (!response.ok) throw new Error("status " + response.status);
      return response.json();
    });
  }

  function report(form, answer, undoToken) {
    var state = form.querySelector(".vote-state");
    show(form, answer.vote);
    state.textContent = answer.vote ? "Saved: “" + words[answer.vote] + "”. " : "Vote taken back. ";
    if (undoToken && undoTemplate && undoForm) {
      var button = undoTemplate.content.firstElementChild.cloneNode(true);
      button.addEventListener("click", function () {
        post(undoForm, { undo: undoToken }).then(function (undone) {
          report(form, undone, null);
          state.textContent = "Undone. ";
          live.textContent = "Undone: " + undone.title;
        }).catch(function () { undoForm.querySelector("input[name=undo]").value = undoToken; undoForm.submit(); });
      });
      state.appendChild(button);
    }
    live.textContent = state.textContent + (answer.title || "");
  }

  document.querySelectorAll("form[data-vote]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var button = event.submitter;
      if (!button || button.name !== "vote") return;
      event.preventDefault();
      post(form, { vote: button.value }).then(function (answer) {
        report(form, answer, answer.undo);
      }).catch(function () {
        // Fall back to the plain form post, which shows the page again with the vote saved.
        var field = document.createElement("input");
        field.type = "hidden"; field.name = "vote"; field.value = button.value;
        form.appendChild(field);
        form.submit();
      });
    });
  });
})();
