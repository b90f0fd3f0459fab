// The taxonomy page: every class with search, train/val/test counts (--lists) and per-class top-1 (--report);
// a click on a class lists the report's videos of that class that the model got right and wrong.
"use strict";

const $ = (id) => document.getElementById(id);
let data = null;

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function render(filter) {
  const body = $("classes");
  body.innerHTML = "";
  const needle = filter.trim().toLowerCase();
  for (const cls of data.classes) {
    if (needle && !cls.name.toLowerCase().includes(needle) && String(cls.label) !== needle) continue;
    const row = document.createElement("tr");
    row.className = "class-row";
    row.dataset.label = cls.label;
    cell(row, cls.label);
    cell(row, cls.name).className = "class-name";
    for (const split of data.splits) cell(row, cls.counts[split]);
    if (data.has_accuracy) {
      const td = cell(row, "");
      if (cls.top1 === null || cls.top1 === undefined) {
        td.textContent = "-";
      } else {
        td.innerHTML = `<span class="acc" style="width:${Math.round(cls.top1 * 0.6)}px"></span>`;
        td.appendChild(document.createTextNode(`${cls.top1.toFixed(1)}%`));
      }
    }
    row.addEventListener("click", () => showClass(cls.label));
    body.appendChild(row);
  }
}

function videoList(target, items) {
  target.innerHTML = "";
  for (const video of items) {
    const figure = document.createElement("figure");
    figure.className = "report-video";
    figure.innerHTML = `<video controls muted preload="metadata"></video><figcaption></figcaption>`;
    figure.querySelector("video").src = video.url;
    figure.querySelector("figcaption").textContent =
      `${video.name}: predicted ${video.predicted} (${(100 * video.score).toFixed(0)}%)`;
    target.appendChild(figure);
  }
}

async function showClass(label) {
  const response = await fetch(`/v1/classes/${label}`);
  const cls = await response.json();
  $("detail").hidden = false;
  $("detail-name").textContent = `${cls.label}: ${cls.name}`;
  const counts = Object.entries(cls.counts).map(([split, n]) => `${n} ${split}`).join(", ");
  $("detail-facts").textContent = [counts, cls.report ? `report ${cls.report}` : "no test report (--report DIR)"]
    .filter(Boolean).join("; ");
  $("right-count").textContent = cls.right.length;
  $("wrong-count").textContent = cls.wrong.length;
  videoList($("right"), cls.right);
  videoList($("wrong"), cls.wrong);
}

async function load() {
  const response = await fetch("/v1/classes");
  data = await response.json();
  for (const split of data.splits) {
    const th = document.createElement("th");
    th.textContent = split;
    $("head").appendChild(th);
  }
  if (data.has_accuracy) {
    const th = document.createElement("th");
    th.textContent = `top-1 (${data.report})`;
    $("head").appendChild(th);
  }
  $("summary").textContent = `${data.classes.length} classes`;
  render("");
}

$("search").addEventListener("input", () => render($("search").value));
load();
