# mclust's reference numbers for every benchmark CSV: the BIC table of Mclust(X, G = 1:9) and
# the partitions of its default hierarchical initialisation.
#
#   Rscript benchmarks/mclust_reference.R [--data=DIR] [--out=DIR] [--gmax=9]
#                                         [--datasets=a,b,...] [--models=VVV,EEE,...]
#                                         [--no-hc]
#
# Defaults: --data=benchmarks/data, --out=tests/data/mclust. Writes one <name>.json per CSV
# (files ending in _labels.csv are labels, not data sets). Everything mclust does is run with
# its defaults (all 14 models, emControl(), hcUse = "SVD", hcModelName = "VVV"); --models
# restricts Mclust to some models (benchmarks/bench_mclust.py times a like-for-like sweep so).
#
# Per data set, the JSON holds:
#   n, d, mclust and R versions, seed, seconds (wall time of the whole Mclust call),
#   cpu_seconds (its CPU time, user + system: less moved by other processes' load);
#   table: one row per (model, G): bic (mclust's sign: higher is better), loglik, df
#     (nMclustParams), status ("ok" or "failed": mclust returned NA) and mclust's returnCode;
#     loglik = (bic + df log n) / 2, the exact inverse of mclust's bic();
#   best: the model, G, bic and loglik Mclust selected;
#   hc: for the VVV, EII and VII criteria on the scaled SVD of the data (hc(X, modelName,
#     use = "SVD")): the 0-based rows agglomerated (all rows, or for n > 2000 a random
#     subset of 2000 in the order drawn, as Mclust does), the merges (0-based labels, as
#     hc's pairs: the merged cluster keeps the smaller label) and the seconds hc took; for
#     VVV (Mclust's default) also hclass(hc, 1:gmax) as 0-based labels per G.
# Mclust's own subset for n > 2000 is drawn after set.seed(seed); the hc subset after
# set.seed(seed + 1), so both are reproducible.

suppressPackageStartupMessages({
  library(mclust)
  library(jsonlite)
})

option <- function(args, name, default) {
  hit <- grep(paste0("^--", name, "="), args, value = TRUE)
  if (length(hit)) sub(paste0("^--", name, "="), "", hit[1]) else default
}

args <- commandArgs(trailingOnly = TRUE)
data_dir <- option(args, "data", file.path("benchmarks", "data"))
out_dir <- option(args, "out", file.path("tests", "data", "mclust"))
gmax <- as.integer(option(args, "gmax", "9"))
only <- option(args, "datasets", "")
models <- option(args, "models", "")
model_names <- if (nzchar(models)) strsplit(models, ",")[[1]] else NULL
with_hc <- !("--no-hc" %in% args)
seed <- 0L
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

bic_table <- function(BIC, n, d) {
  codes <- attr(BIC, "returnCodes")
  rows <- list()
  for (model in colnames(BIC)) {
    for (g in rownames(BIC)) {
      bic <- BIC[g, model]
      df <- nMclustParams(model, d, as.integer(g))
      rows[[length(rows) + 1]] <- list(
        model = model, G = as.integer(g), bic = bic, df = df,
        loglik = if (is.na(bic)) NA else (bic + df * log(n)) / 2,
        status = if (is.na(bic)) "failed" else "ok",
        return_code = codes[g, model])
    }
  }
  rows
}

hc_reference <- function(X, gmax) {
  n <- nrow(X)
  rows <- seq_len(n)
  if (n > mclust.options("subset")) {
    set.seed(seed + 1L)
    rows <- sample(seq_len(n), size = mclust.options("subset"), replace = FALSE)
  }
  out <- list()
  for (model in c("VVV", "EII", "VII")) {
    seconds <- system.time(tree <- hc(X[rows, , drop = FALSE], modelName = model,
                                      use = "SVD"))[["elapsed"]]
    out[[model]] <- list(seconds = seconds,
                         merges = t(matrix(as.integer(tree), nrow = 2L)) - 1L)
    if (model == "VVV") {
      parts <- hclass(tree, seq_len(gmax))
      out[[model]]$partitions <- lapply(seq_len(gmax), function(g) as.integer(parts[, g]) - 1L)
    }
  }
  list(rows = rows - 1L, criteria = out)
}

run_one <- function(path, name) {
  X <- as.matrix(na.omit(read.csv(path)))  # complete rows, as bench_mclust.py reads them
  n <- nrow(X)
  d <- ncol(X)
  set.seed(seed)
  timing <- system.time(fit <- Mclust(X, G = seq_len(gmax), modelNames = model_names,
                                      verbose = FALSE))
  seconds <- timing[["elapsed"]]
  result <- list(
    dataset = name, n = n, d = d, G = seq_len(gmax),
    mclust_version = as.character(packageVersion("mclust")),
    r_version = R.version.string, seed = seed, seconds = seconds,
    cpu_seconds = timing[["user.self"]] + timing[["sys.self"]],
    table = bic_table(fit$BIC, n, d),
    best = list(model = fit$modelName, G = fit$G, bic = fit$bic, loglik = fit$loglik))
  if (with_hc) result$hc <- hc_reference(X, gmax)
  write_json(result, file.path(out_dir, paste0(name, ".json")), auto_unbox = TRUE,
             digits = NA, na = "null", pretty = FALSE)
  cat(sprintf("%-14s n = %5d d = %2d  Mclust %6.2f s  best %s,%d\n", name, n, d, seconds,
              fit$modelName, fit$G))
}

files <- sort(list.files(data_dir, pattern = "\\.csv$", full.names = TRUE))
files <- files[!grepl("_labels\\.csv$", files)]
names <- sub("\\.csv$", "", basename(files))
if (nzchar(only)) {
  keep <- names %in% strsplit(only, ",")[[1]]
  files <- files[keep]
  names <- names[keep]
}
invisible(Mclust(datasets::faithful, G = 1:2, verbose = FALSE))  # warm-up, not timed
for (i in seq_along(files)) run_one(files[i], names[i])
