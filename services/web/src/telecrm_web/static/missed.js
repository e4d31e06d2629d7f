// The missed calls page: the numbers to call back (mine, my team's, all I see), grouped by number by
// the calls service, each with its call-back button and the time since the last missed call.
import { PagedTable, restoreForm } from "./common.js";
import { missedColumns } from "./calling.js";

const form = document.getElementById("missed-filters");
restoreForm(form);
const table = new PagedTable({
  prefix: "missed",
  path: "/api/missed-calls",
  totalKey: "total_missed",
  emptyKey: "no_missed",
  params: () => ({
    scope: form.elements.scope.value,
    state: form.elements.state.value,
    number: form.elements.number.value.trim(),
  }),
  columns: missedColumns,
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  table.reset();
});
table.reset();
