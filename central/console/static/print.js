// The muster list's Print button (a file of its own: the console's CSP allows no inline script).
"use strict";
const button = document.getElementById("print");
if (button) {
  button.addEventListener("click", () => window.print());
}
