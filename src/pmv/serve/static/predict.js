// The predict page: upload a video to /v1/predict, show it upright (the browser applies the rotation tag), the
// top-5 with bars, and the test crops drawn on a middle frame (decoded upright by the server), each with its top-1.
"use strict";

const $ = (id) => document.getElementById(id);
const COLOURS = ["#e4572e", "#17bebb", "#ffc914"];

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

function percent(p) {
  return (100 * p).toFixed(1) + "%";
}

async function loadModel() {
  const response = await fetch("/v1/model");
  const model = await response.json();
  $("model").textContent = `${model.name}: ${model.num_classes} classes, input ${model.input.frames} x ` +
    `${model.input.height} x ${model.input.width}, views ${model.views}`;
  const choices = [model.views, "1x1", "1x3", "3x1", "3x3", "5x3", "10x3"].filter((v, i, all) => all.indexOf(v) === i);
  for (const views of choices) {
    const option = document.createElement("option");
    option.value = views;
    option.textContent = views + (views === model.views ? " (recipe)" : "");
    $("views").appendChild(option);
  }
}

function showTop(topK) {
  const list = $("top5");
  list.innerHTML = "";
  for (const hit of topK) {
    const item = document.createElement("li");
    item.className = "bar-row";
    item.dataset.name = hit.name;
    item.dataset.prob = hit.prob;
    item.innerHTML = `<span class="bar-label"></span><span class="bar"><span class="fill"></span></span>` +
      `<span class="bar-value"></span>`;
    item.querySelector(".bar-label").textContent = hit.name;
    item.querySelector(".fill").style.width = percent(hit.prob);
    item.querySelector(".bar-value").textContent = percent(hit.prob);
    list.appendChild(item);
  }
  $("top1").textContent = topK.length ? topK[0].name : "-";
}

function showCrops(result) {
  const frame = $("frame");
  frame.querySelectorAll(".crop-box").forEach((box) => box.remove());
  $("crops").innerHTML = "";
  if (result.frame) {
    $("frame-img").src = result.frame;
  }
  (result.crops || []).forEach((crop, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const box = document.createElement("div");
    box.className = "crop-box";
    box.dataset.name = crop.name;
    box.dataset.top1 = crop.top1.name;
    Object.assign(box.style, {
      top: percent(crop.top), left: percent(crop.left), height: percent(crop.height), width: percent(crop.width),
      borderColor: colour, borderStyle: ["solid", "dashed", "dotted"][i % 3], zIndex: 10 + i,
    });
    // labels sit at the box's top edge, or its bottom edge for the last crop, so overlapping boxes stay readable
    const where = i === (result.crops.length - 1) && i > 0 ? "bottom:0" : "top:0";
    box.innerHTML = `<span class="crop-label" style="background:${colour};${where}"></span>`;
    box.querySelector(".crop-label").textContent = `${crop.name}: ${crop.top1.name}`;
    frame.appendChild(box);
    const item = document.createElement("li");
    item.innerHTML = `<span class="swatch" style="background:${colour}"></span> <b></b>: <span></span>`;
    item.querySelector("b").textContent = crop.name;
    item.querySelector("span:last-child").textContent = `${crop.top1.name} (${percent(crop.top1.prob)})`;
    $("crops").appendChild(item);
  });
}

async function predict(file) {
  $("player").src = URL.createObjectURL(file);
  $("player").play().catch(() => {});
  setStatus(`Uploading ${file.name} (${(file.size / 1e6).toFixed(1)} MB)...`);
  document.body.dataset.state = "busy";
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("views", $("views").value);
  form.append("frame", "1");
  try {
    const response = await fetch("/v1/predict", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) {
      setStatus(`${response.status} ${body.error}: ${body.detail}`, true);
      document.body.dataset.state = "error";
      return;
    }
    showTop(body.top_k);
    showCrops(body);
    const v = body.video;
    $("facts").textContent = `${v.width} x ${v.height} (${v.orientation}), ${v.duration} s at ${v.fps} fps; ` +
      `${body.views} views; decode ${body.seconds.decode.toFixed(2)} s, model ${body.seconds.model.toFixed(2)} s`;
    setStatus(`${file.name}: ${body.top_k[0].name}`);
    document.body.dataset.state = "done";
  } catch (err) {
    setStatus(`The request failed: ${err}`, true);
    document.body.dataset.state = "error";
  }
}

$("file").addEventListener("change", () => {
  if ($("file").files.length) predict($("file").files[0]);
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) predict(event.dataTransfer.files[0]);
});
loadModel().catch((err) => setStatus(`Cannot reach the server: ${err}`, true));
