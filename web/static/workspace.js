// The workspace's only script: the copy button of a 21Vianet request and the canned reply picker
// (no inline script: the Content-Security-Policy allows none).
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  try {
    await navigator.clipboard.writeText(source.textContent);
  } catch {
    // no clipboard permission (plain http): select the text for Ctrl-C instead
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
  button.classList.add("copied");
});

// A canned reply is filled in by the server (GET ?macro=ID, which works without this script):
// picking one sends its form at once.
document.addEventListener("change", (event) => {
  const select = event.target.closest("select[data-autosubmit]");
  if (select) select.form.submit();
});
