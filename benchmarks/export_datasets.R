# Export the real data sets of the mclust benchmark to CSV (features; labels in a separate file).
#
#   Rscript benchmarks/export_datasets.R [out_dir]     # default: benchmarks/data
#
# Needs R with mclust (Debian: apt-get install r-cran-mclust). Each data set becomes
# <name>.csv (numeric features, a header, one row per observation) and, where the data carry a
# known class, <name>_labels.csv (one column, "class"). The simulated data set is written by
# benchmarks/simulate_correlated.py. See benchmarks/data/README.md for origins and licences.

suppressPackageStartupMessages(library(mclust))

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[1] else file.path("benchmarks", "data")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

wdbc_mean <- c("Radius_mean", "Texture_mean", "Perimeter_mean", "Area_mean",
               "Smoothness_mean", "Compactness_mean", "Concavity_mean", "Nconcave_mean",
               "Symmetry_mean", "Fractaldim_mean")

# name -> list(features, labels or NULL)
sets <- list(
  banknote = list(banknote[, -1], banknote$Status),
  thyroid = list(thyroid[, -1], thyroid$Diagnosis),
  wdbc = list(wdbc[, wdbc_mean], wdbc$Diagnosis),
  wreath = list(as.data.frame(wreath), NULL),
  chevron = list(chevron[, c("x", "y")], chevron$class),
  diabetes = list(diabetes[, -1], diabetes$class),
  faithful = list(datasets::faithful, NULL),
  iris = list(datasets::iris[, 1:4], datasets::iris$Species),
  gvhd_control = list(GvHD.control, NULL)
)

for (name in names(sets)) {
  features <- sets[[name]][[1]]
  labels <- sets[[name]][[2]]
  write.csv(features, file.path(out_dir, paste0(name, ".csv")), row.names = FALSE, quote = FALSE)
  if (!is.null(labels)) {
    write.csv(data.frame(class = as.character(labels)),
              file.path(out_dir, paste0(name, "_labels.csv")), row.names = FALSE, quote = FALSE)
  }
  cat(sprintf("%-14s N = %5d  D = %2d%s\n", name, nrow(features), ncol(features),
              if (is.null(labels)) "" else "  (+ labels)"))
}
