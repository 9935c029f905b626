// The owner's usage per day over the last 30 days: a bar chart (SVG made with DOM calls)
// and the table per day and model it sums.
import { api, number, page, rows } from "./app.js";

const DAYS = 30;
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 200;
const LABELS = { requests: "requests", total_tokens: "total tokens", cost: "cost" };

function svg(tag, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function lastDays() {
  const today = new Date();
  const days = [];
  for (let back = DAYS - 1; back >= 0; back -= 1) {
    const utc = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - back);
    days.push(new Date(utc).toISOString().slice(0, 10));
  }
  return days;
}

function format(metric, value) {
  return metric === "cost" ? number(value, 4) : number(value);
}

function draw(perDay, metric) {
  const days = lastDays();
  const values = days.map((day) => (perDay.get(day) || {})[metric] || 0);
  const top = Math.max(...values, 0);
  const slot = WIDTH / days.length;
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT + 20}`,
    role: "img",
    "aria-label": `${LABELS[metric]} per day`,
    class: "bars",
  });
  chart.append(svg("line", { x1: 0, y1: HEIGHT, x2: WIDTH, y2: HEIGHT, class: "axis" }));
  days.forEach((day, i) => {
    const height = top > 0 ? (values[i] / top) * (HEIGHT - 10) : 0;
    const bar = svg("rect", {
      x: i * slot + 1,
      y: HEIGHT - height,
      width: Math.max(slot - 2, 1),
      height,
      class: "bar",
      "data-day": day,
    });
    bar.append(svg("title", {}, `${day}: ${format(metric, values[i])} ${LABELS[metric]}`));
    chart.append(bar);
  });
  for (const i of [0, days.length - 1]) {
    const anchor = i === 0 ? "start" : "end";
    const x = i === 0 ? 0 : WIDTH;
    chart.append(svg("text", { x, y: HEIGHT + 16, "text-anchor": anchor }, days[i]));
  }
  document.getElementById("chart").replaceChildren(chart);
  const total = values.reduce((a, b) => a + b, 0);
  const caption = `${format(metric, total)} ${LABELS[metric]} in ${DAYS} days`;
  document.getElementById("chart-caption").textContent =
    `${caption}; the highest day ${format(metric, top)}.`;
}

page(async () => {
  const days = lastDays();
  const range = `start=${days[0]}&end=${days[days.length - 1]}`;
  const [perDay, detail] = await Promise.all([
    api(`/usage?${range}&group_by=day`),
    api(`/usage?${range}`),
  ]);
  const byDay = new Map(perDay.data.map((row) => [row.date, row]));
  const metric = document.getElementById("metric");
  metric.addEventListener("change", () => draw(byDay, metric.value));
  draw(byDay, metric.value);
  rows(document.getElementById("usage-table"), detail.data, (r) => [
    r.date,
    r.model,
    number(r.requests),
    number(r.prompt_tokens),
    number(r.completion_tokens),
    number(r.total_tokens),
    number(r.cost, 6),
  ]);
});
