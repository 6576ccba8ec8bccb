# References for tests/test_em_models.py, computed once with R mclust:
# - mclust_parity.json: `me` (EM from a given partition) for all 14 covariance models on small
#   data sets, converged tightly;
# - mclust_n_parameters.csv: nMclustParams for every model, D in (1, 2, 3, 5, 13), K in (1..4, 9).
#
#   Rscript tests/data/make_mclust_parity.R    (from the repository root; needs mclust, jsonlite)
#
# Data: Old Faithful (bayesgmm/data/faithful.csv); iris' four measurements (R's datasets::iris);
# a simulated correlated three-feature mixture with features on different scales (written here
# to sim_correlated.csv). Starting partitions: mclust's own hierarchical clustering, hclass(hc(X), K).
suppressMessages({library(mclust); library(jsonlite)})

set.seed(20240601)
sim_means <- list(c(0, 0, 0), c(3, 1, -1), c(-1, 3, 2))
sim_covs <- list(matrix(c(1, .6, .3, .6, 1, .2, .3, .2, 1), 3),
                 matrix(c(.5, -.2, 0, -.2, 1.5, .4, 0, .4, .8), 3),
                 matrix(c(1.2, .5, .5, .5, .7, .1, .5, .1, 2), 3))
sizes <- c(70, 60, 50)
sim <- do.call(rbind, lapply(1:3, function(k) MASS::mvrnorm(sizes[k], sim_means[[k]], sim_covs[[k]])))
sim <- sweep(sim, 2, c(1, 10, 0.1), "*")  # features in different units
colnames(sim) <- c("x1", "x2", "x3")
write.csv(round(sim, 6), "tests/data/sim_correlated.csv", row.names = FALSE)

datasets <- list(
  faithful = list(X = as.matrix(read.csv("bayesgmm/data/faithful.csv")), K = 2:3),
  iris = list(X = as.matrix(iris[, 1:4]), K = 2:3),
  sim_correlated = list(X = as.matrix(read.csv("tests/data/sim_correlated.csv")), K = 2:3)
)
models <- c("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV",
            "EVV", "VVV")
control <- emControl(tol = c(1e-14, 1e-14), itmax = c(200000L, 100000L))

fits <- list()
partitions <- list()
for (name in names(datasets)) {
  X <- datasets[[name]]$X
  tree <- hc(X)
  partitions[[name]] <- list()
  for (K in datasets[[name]]$K) {
    labels <- as.vector(hclass(tree, K))
    partitions[[name]][[as.character(K)]] <- labels - 1L
    for (model in models) {
      fit <- me(modelName = model, data = X, z = unmap(labels), control = control, warn = FALSE)
      ok <- !is.na(fit$loglik)
      sigma <- if (ok) fit$parameters$variance$sigma else NULL
      fits[[length(fits) + 1]] <- list(
        dataset = name, model = model, K = K, loglik = if (ok) fit$loglik else NULL,
        n_iter = as.numeric(attr(fit, "info")[[1]]), return_code = attr(fit, "returnCode"),
        weights = if (ok) as.vector(fit$parameters$pro) else NULL,
        means = if (ok) t(fit$parameters$mean) else NULL,
        covariances = if (ok) lapply(1:K, function(k) sigma[, , k]) else NULL
      )
    }
  }
}
out <- list(
  mclust_version = as.character(packageVersion("mclust")),
  control = list(tol = control$tol, itmax = control$itmax),
  partitions = partitions,
  fits = fits
)
write_json(out, "tests/data/mclust_parity.json", digits = NA, auto_unbox = TRUE, pretty = FALSE)

counts <- do.call(rbind, lapply(models, function(model) do.call(rbind, lapply(
  c(1, 2, 3, 5, 13), function(d) do.call(rbind, lapply(c(1:4, 9), function(G) data.frame(
    model = model, n_features = d, n_components = G,
    # one feature: mclust has only "E" and "V" (equal or variable variance)
    n_parameters = nMclustParams(if (d == 1) substr(model, 1, 1) else model, d = d, G = G))))))))
write.csv(counts, "tests/data/mclust_n_parameters.csv", row.names = FALSE, quote = FALSE)
