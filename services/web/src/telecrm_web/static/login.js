// The log-in page: choosing a language reloads the page in it (the form works without this script).
for (const select of document.querySelectorAll("select[data-autosubmit]")) {
  select.addEventListener("change", () => select.form.submit());
}
