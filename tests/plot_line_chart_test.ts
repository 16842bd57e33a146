/** The SVG line chart shared by the demo report and the training dashboard. */
import assert from "node:assert/strict";
import { lineChartSvg, movingAverage, niceStep, tickLabel } from "../core/plot/line_chart.js";

Deno.test("line chart: ticks, series, flat and empty charts, escaping", () => {
  assert.equal(niceStep(10, 5), 2);
  assert.equal(niceStep(0, 5), 1);
  assert.equal(tickLabel(2e-6, 1e-6), "2.0e-6");
  assert.deepEqual(movingAverage([2, 4, 6], 2), [2, 3, 5]);
  const svg = lineChartSvg([
    { label: "a<b", color: "#123", points: [[1, 1], [2, 3], [3, Infinity]] },
    { label: "c", color: "red", points: [[1, 2]] },
  ], { title: "t & u", xLabel: "step" });
  assert.match(svg, /data-label="a&lt;b" data-points="2"/);
  assert.match(svg, /data-label="c" data-points="1"/);
  assert.match(svg, /<circle /); // a one-point series still shows
  assert.match(svg, />t &amp; u</);
  // A constant tiny value (a learning rate) keeps its own scale, not a band around zero.
  const flat = lineChartSvg([{ label: "lr", color: "blue", points: [[1, 2e-6], [5, 2e-6]] }]);
  assert.match(flat, />2\.0e-6</);
  assert.ok(!/>0</.test(flat), "no zero tick for a flat 2e-6");
  const empty = lineChartSvg([], { empty: "nothing yet" });
  assert.match(empty, />nothing yet</);
  // Log scale drops what it cannot show.
  const log = lineChartSvg([{ label: "x", color: "k", points: [[1, 0], [2, 10], [3, 100]] }], {
    logY: true,
  });
  assert.match(log, /data-points="2"/);
});
