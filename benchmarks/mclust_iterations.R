# EM iterations mclust runs in Mclust(X, G = 1:9): each model's EM from the hierarchical start
# (hc VVV on the scaled SVD, as Mclust's default), K = 2..9, read from me()'s "info" attribute
# (models whose info has no iteration count, e.g. those with inner M-step iterations, are
# left out and counted in "fits"), and the wall time of the whole Mclust call.
#   Rscript benchmarks/mclust_iterations.R diabetes faithful iris thyroid banknote
suppressPackageStartupMessages(library(mclust))
for (name in commandArgs(TRUE)) {
  X <- as.matrix(read.csv(file.path("benchmarks/data", paste0(name, ".csv"))))
  classes <- hclass(hc(X, modelName = "VVV", use = "SVD"), 2:9)
  total <- 0
  n <- 0
  for (m in mclust.options("emModelNames")) for (G in 2:9) {
    z <- unmap(classes[, as.character(G)])
    fit <- tryCatch(me(X, modelName = m, z = z, warn = FALSE), error = function(e) NULL)
    info <- if (is.null(fit)) NULL else attr(fit, "info")
    if (is.numeric(info) && "iterations" %in% names(info)) {
      total <- total + info[["iterations"]]
      n <- n + 1
    }
  }
  seconds <- system.time(Mclust(X, G = 1:9, verbose = FALSE))[["elapsed"]]
  cat(sprintf("%-10s %5d EM iterations over %3d fits (%.1f per fit); Mclust(G = 1:9) %.2f s\n",
              name, as.integer(total), n, total / n, seconds))
}
