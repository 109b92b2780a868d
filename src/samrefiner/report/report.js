// samrefiner report: sort and filter the gallery. No network, no libraries.
// The page records its state on #report-status (data-ready, data-cards, data-shown,
// data-errors) so a headless browser can check it from the DOM alone.
(function () {
  "use strict";

  var errors = [];

  function status() {
    return document.getElementById("report-status");
  }

  function recordError(message) {
    errors.push(String(message));
    var el = status();
    if (el) {
      el.setAttribute("data-errors", String(errors.length));
    }
    var list = document.getElementById("js-errors");
    if (list) {
      var item = document.createElement("li");
      item.textContent = String(message);
      list.appendChild(item);
    }
  }

  window.addEventListener("error", function (event) {
    recordError(event.message || "script error");
  });
  window.addEventListener("unhandledrejection", function (event) {
    recordError("unhandled rejection: " + event.reason);
  });

  function value(card, key) {
    var raw = card.getAttribute("data-" + key);
    return raw === null || raw === "" ? NaN : parseFloat(raw);
  }

  function inputNumber(id, fallback) {
    var el = document.getElementById(id);
    if (!el || el.value === "") {
      return fallback;
    }
    var v = parseFloat(el.value);
    return isNaN(v) ? fallback : v;
  }

  function compare(key, descending) {
    return function (a, b) {
      if (key === "name") {
        var an = a.getAttribute("data-key") + "\u0000" + a.getAttribute("data-object");
        var bn = b.getAttribute("data-key") + "\u0000" + b.getAttribute("data-object");
        return an < bn ? -1 : an > bn ? 1 : 0;
      }
      var x = value(a, key);
      var y = value(b, key);
      // Missing values (no ground truth, baselines) always go last.
      if (isNaN(x) || isNaN(y)) {
        return isNaN(x) - isNaN(y);
      }
      return descending ? y - x : x - y;
    };
  }

  function apply() {
    var grid = document.getElementById("cards");
    var cards = Array.prototype.slice.call(grid.querySelectorAll(".card"));
    var choice = document.getElementById("sort").value.split(":");
    cards.sort(compare(choice[0], choice[1] === "desc"));
    cards.forEach(function (card) {
      grid.appendChild(card);
    });

    var gainMin = inputNumber("gain-min", -Infinity);
    var gainMax = inputNumber("gain-max", Infinity);
    var predMin = inputNumber("pred-min", 0);
    var predMax = inputNumber("pred-max", 1);
    var wanted = document.getElementById("status").value;
    var grewOnly = document.getElementById("grew").checked;
    var needle = document.getElementById("search").value.trim().toLowerCase();
    var shown = 0;
    cards.forEach(function (card) {
      var gain = value(card, "gain");
      var pred = value(card, "pred");
      var name = (card.getAttribute("data-key") + " " + card.getAttribute("data-object")).toLowerCase();
      var ok =
        (isNaN(gain) || (gain >= gainMin && gain <= gainMax)) &&
        (isNaN(pred) ? predMin <= 0 && predMax >= 1 : pred >= predMin && pred <= predMax) &&
        (!wanted || card.getAttribute("data-status") === wanted) &&
        (!grewOnly || card.getAttribute("data-grew") === "1") &&
        (!needle || name.indexOf(needle) !== -1);
      card.hidden = !ok;
      if (ok) {
        shown += 1;
      }
    });
    document.getElementById("shown").textContent = String(shown);
    status().setAttribute("data-shown", String(shown));
  }

  document.addEventListener("DOMContentLoaded", function () {
    var controls = document.getElementById("controls");
    controls.addEventListener("input", apply);
    controls.addEventListener("change", apply);
    apply();
    var el = status();
    el.setAttribute("data-cards", String(document.querySelectorAll("#cards .card").length));
    el.setAttribute("data-ready", "1");
  });
})();
