// The report page's charts: each is plotly's JSON in a data block (not run: the page allows no
// inline script), drawn with plotly.js once it has loaded.
window.addEventListener("DOMContentLoaded", () => {
  for (const block of document.querySelectorAll("script[data-chart]")) {
    const figure = JSON.parse(block.textContent);
    const target = document.getElementById(block.dataset.chart);
    window.Plotly.newPlot(target, figure.data, figure.layout, {
      displaylogo: false,
      responsive: true,
    });
  }
});
