// The page of `segkit serve`: one image, its prediction overlaid, the post-processing
// (the dense CRF) and test-time augmentation switched, the masks downloaded.
// No build step and nothing loaded from elsewhere: it works offline.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  file: null,
  name: "image",
  photo: null, // the image as the browser decodes it; null when it cannot
  results: new Map(), // "tta=true" -> the server's JSON answer for the current file
  shown: null,
  xhr: null,
  ticker: null,
};

async function start() {
  try {
    const response = await fetch("info");
    if (!response.ok) throw new Error(`GET /info answered ${response.status}`);
    state.info = await response.json();
  } catch (error) {
    fail(`cannot reach the server (${error.message}); is segkit serve still running?`);
    return;
  }
  describeModel(state.info);
  document.body.dataset.state = "empty";
}

function describeModel(info) {
  const model = info.model;
  const parts = [model.name, `${model.backbone} + ${model.head}`, `${info.classes.length} classes`,
    model.device];
  if (model.checkpoint) parts.push(model.checkpoint);
  $("model").textContent = parts.join(" · ");
  const names = info.postprocessors.map((part) => part.name);
  const postprocess = $("postprocess");
  if (names.length) {
    postprocess.checked = info.postprocess_default;
    $("postprocessors").textContent = `(${names.join(" → ")})`;
  } else {
    postprocess.checked = false;
    postprocess.disabled = true;
    $("postprocessors").textContent = "(the checkpoint has none)";
  }
  $("tta").checked = info.tta.default;
  const scales = info.tta.scales.join(", ");
  $("tta-scales").textContent = `(scales ${scales}${info.tta.flip ? " + flip" : ""})`;
}

// --- choosing an image -----------------------------------------------------------------

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) choose(file);
});

for (const name of ["dragenter", "dragover"]) {
  document.addEventListener(name, (event) => {
    event.preventDefault();
    $("drop").classList.add("over");
  });
}
document.addEventListener("dragleave", (event) => {
  if (event.relatedTarget === null) $("drop").classList.remove("over");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  $("drop").classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) choose(file);
});

async function choose(file) {
  if (state.xhr) state.xhr.abort();
  state.file = file;
  state.name = file.name.replace(/\.[^.]*$/, "") || "image";
  state.results.clear();
  state.shown = null;
  clear();
  state.photo = await decodePhoto(file);
  update();
}

function clear() {
  // nothing of the previous image stays on show beside the next one's progress or error
  $("views").classList.add("empty");
  $("legend").hidden = true;
  $("download-mask").disabled = true;
  $("download-overlay").disabled = true;
}

async function decodePhoto(file) {
  // The server reads the pixels as stored (no EXIF rotation), so the page shows them so.
  for (const options of [{ imageOrientation: "none" }, undefined]) {
    try {
      return await createImageBitmap(file, options);
    } catch (error) {
      // an unknown option, or a format this browser cannot show: try plainly, then give up
    }
  }
  return null;
}

// --- asking the server -----------------------------------------------------------------

function wanted() {
  return { postprocess: $("postprocess").checked, tta: $("tta").checked };
}

function update() {
  if (!state.file) return;
  const want = wanted();
  const known = state.results.get(`tta=${want.tta}`);
  // an answer with post-processing also holds the raw prediction: switching it off is free
  if (known && (known.postprocess || !want.postprocess)) {
    show(known, want);
  } else {
    send(want);
  }
}

function send(want) {
  if (state.xhr) state.xhr.abort();
  const form = new FormData();
  form.append("image", state.file, state.file.name);
  const query = `format=json&masks=true&postprocess=${want.postprocess}&tta=${want.tta}`;
  const xhr = new XMLHttpRequest();
  state.xhr = xhr;
  xhr.open("POST", `predict?${query}`);
  xhr.responseType = "json";
  const started = performance.now();
  busy("uploading…", 0);
  xhr.upload.onprogress = (event) => {
    if (event.lengthComputable) {
      busy(`uploading ${Math.round((100 * event.loaded) / event.total)}%`, event.loaded / event.total);
    }
  };
  xhr.upload.onload = () => {
    clearInterval(state.ticker);
    state.ticker = setInterval(() => {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      busy(`the server is predicting… ${seconds} s`, null);
    }, 100);
  };
  xhr.onload = () => {
    clearInterval(state.ticker);
    state.xhr = null;
    if (xhr.status === 200 && xhr.response) {
      state.results.set(`tta=${want.tta}`, xhr.response);
      update(); // the switches may have moved meanwhile
    } else {
      const error = xhr.response && xhr.response.error;
      fail(error || `the server answered ${xhr.status} ${xhr.statusText}`);
    }
  };
  xhr.onerror = () => {
    clearInterval(state.ticker);
    fail("the connection to the server failed; is segkit serve still running?");
  };
  xhr.onabort = () => clearInterval(state.ticker);
  xhr.send(form);
}

// --- showing an answer -----------------------------------------------------------------

async function show(result, want) {
  const refined = want.postprocess && result.postprocess;
  const maskData = refined || !result.postprocess ? result.mask_png : result.raw_mask_png;
  const mask = await pixels(maskData);
  const raw = refined ? await pixels(result.raw_mask_png) : null;
  state.shown = { result, refined, maskData, mask, raw };
  draw();
  legend(result, refined, result.postprocess && !refined);
  $("download-mask").disabled = false;
  $("download-overlay").disabled = false;
  const how = refined ? `refined by ${result.postprocessors.join(", ")}` : "no post-processing";
  done(`${result.width}×${result.height} px · ${how} · ${result.inference} · ` +
    `${Math.round(result.timing_ms.total)} ms on the server`);
  document.body.dataset.showing = refined ? "refined" : "raw";
  document.body.dataset.state = "ready";
}

async function pixels(base64) {
  const image = new Image();
  image.src = `data:image/png;base64,${base64}`;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  return { image, data: context.getImageData(0, 0, canvas.width, canvas.height).data };
}

function draw() {
  const shown = state.shown;
  if (!shown) return;
  const alpha = $("opacity").value / 100;
  $("views").classList.remove("empty");
  $("views").classList.toggle("compare", shown.refined);
  paint($("canvas-final"), shown.mask.image, alpha);
  const names = shown.result.postprocessors.join(", ");
  $("view-final").querySelector("figcaption").textContent = shown.refined
    ? `after post-processing (${names})`
    : "prediction";
  $("view-raw").hidden = !shown.refined;
  $("view-changed").hidden = !shown.refined;
  if (shown.refined) {
    paint($("canvas-raw"), shown.raw.image, alpha);
    paintChanged($("canvas-changed"), shown.raw.data, shown.mask.data);
    const share = shown.result.changed_share;
    $("changed-share").textContent = `(${percent(share)} of the image, in magenta)`;
  }
}

function paint(canvas, mask, alpha) {
  const context = fit(canvas, mask.naturalWidth, mask.naturalHeight);
  photo(context, canvas);
  context.globalAlpha = alpha;
  context.drawImage(mask, 0, 0, canvas.width, canvas.height);
  context.globalAlpha = 1;
}

function paintChanged(canvas, before, after) {
  const { width, height } = $("canvas-final");
  const context = fit(canvas, width, height);
  context.filter = "grayscale(1) brightness(0.6)";
  photo(context, canvas);
  context.filter = "none";
  const picture = context.getImageData(0, 0, width, height);
  const out = picture.data;
  for (let i = 0; i < out.length; i += 4) {
    if (before[i] !== after[i] || before[i + 1] !== after[i + 1] || before[i + 2] !== after[i + 2]) {
      out[i] = 255;
      out[i + 1] = 0;
      out[i + 2] = 255;
      out[i + 3] = 255;
    }
  }
  context.putImageData(picture, 0, 0);
}

function fit(canvas, width, height) {
  canvas.width = width;
  canvas.height = height;
  canvas.classList.toggle("small", width < 360);
  return canvas.getContext("2d");
}

function photo(context, canvas) {
  if (state.photo) {
    context.drawImage(state.photo, 0, 0, canvas.width, canvas.height);
  } else {
    context.fillStyle = "#7f7f7f"; // the browser cannot show this format: the mask alone
    context.fillRect(0, 0, canvas.width, canvas.height);
  }
}

function legend(result, refined, rawOfRefined) {
  const rows = result.classes.map((entry, i) => ({
    ...entry,
    raw: result.raw_shares ? result.raw_shares[i] : 0,
    shown: rawOfRefined ? result.raw_shares[i] : entry.share,
  }));
  const present = rows.filter((row) => row.shown > 0 || (refined && row.raw > 0));
  present.sort((a, b) => b.shown - a.shown);
  const body = $("legend").querySelector("tbody");
  body.replaceChildren(...present.map((row) => {
    const line = document.createElement("tr");
    const swatch = document.createElement("td");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${row.colour.join(",")})`;
    line.append(swatch, cell(row.name), cell(percent(row.raw), "raw"), cell(percent(row.shown)));
    return line;
  }));
  $("legend").classList.toggle("compare", refined);
  $("share-head").textContent = refined ? "refined" : "share";
  const absent = rows.filter((row) => !present.includes(row)).map((row) => row.name);
  $("absent").textContent = absent.length ? `not in this image: ${absent.join(", ")}` : "";
  $("legend-note").textContent = "(share of the image's pixels)";
  $("legend").hidden = false;
}

function cell(text, className) {
  const element = document.createElement("td");
  element.textContent = text;
  if (className) element.className = className;
  return element;
}

function percent(share) {
  if (share === 0) return "0%";
  return share < 0.001 ? "<0.1%" : `${(100 * share).toFixed(1)}%`;
}

// --- status, switches, downloads --------------------------------------------------------

function busy(text, fraction) {
  document.body.dataset.state = "working";
  const bar = $("status").querySelector(".bar");
  bar.hidden = false;
  bar.classList.toggle("indeterminate", fraction === null);
  bar.firstElementChild.style.width = fraction === null ? "" : `${Math.round(100 * fraction)}%`;
  $("message").className = "";
  $("message").textContent = text;
}

function done(text) {
  $("status").querySelector(".bar").hidden = true;
  $("message").className = "";
  $("message").textContent = text;
}

function fail(text) {
  clearInterval(state.ticker);
  $("status").querySelector(".bar").hidden = true;
  $("message").className = "error";
  $("message").textContent = `error: ${text}`;
  document.body.dataset.state = "error";
}

$("postprocess").addEventListener("change", update);
$("tta").addEventListener("change", update);
$("opacity").addEventListener("input", () => {
  $("opacity-value").textContent = `${$("opacity").value}%`;
  draw();
});

$("download-mask").addEventListener("click", () => {
  const bytes = Uint8Array.from(atob(state.shown.maskData), (c) => c.charCodeAt(0));
  save(new Blob([bytes], { type: "image/png" }), `${state.name}_mask.png`);
});
$("download-overlay").addEventListener("click", () => {
  $("canvas-final").toBlob((blob) => save(blob, `${state.name}_overlay.png`), "image/png");
});

function save(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}

start();
