// Launch buttons (Binder, Colab, JupyterHub) open a chapter's committed learner notebook.
//
// sphinx-book-theme builds each launch link from the page's own source file. For a chapter's prose page
// (book/NN_name.md, a text notebook Colab cannot open) and its solutions page (book/_generated/solutions/
// NN_name_solution.ipynb, generated at build time and never committed) that file does not exist in the repository;
// the notebook a reader wants to run is the chapter's exercises notebook, notebooks/NN_name.ipynb.
(function () {
  const SOURCE = /book(\/|%2F)(?:_generated(?:\/|%2F)solutions(?:\/|%2F))?(\d\d_[a-z0-9_]+?)(?:_solution)?\.(?:md|ipynb)/;
  function retarget() {
    document.querySelectorAll(".dropdown-launch-buttons a[href]").forEach((link) => {
      const href = link.getAttribute("href");
      const match = href.match(SOURCE);
      if (match) {
        const sep = match[1];
        link.setAttribute("href", href.replace(SOURCE, `notebooks${sep}${match[2]}.ipynb`));
        link.setAttribute("title", `${link.title || "Launch"}: the exercises notebook ${match[2]}.ipynb`);
      } else if (!/notebooks(\/|%2F)\d\d_[a-z0-9_]+\.ipynb/.test(href)) {
        link.closest("li")?.remove();  // a notebook with no learner version: nothing to launch
      }
    });
    document.querySelectorAll(".dropdown-launch-buttons").forEach((menu) => {
      if (!menu.querySelector("a[href]")) menu.remove();
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", retarget);
  } else {
    retarget();
  }
})();
