# Reference for tests/test_em_models.py, computed once with R mclust: `me` for EVE on R's
# datasets::swiss (written here to swiss.csv, 47 x 6) from Mclust's default start,
# hclass(hc(X, "VVV", use = "SVD"), K), converged tightly. Same layout as mclust_parity.json.
# From this start the EVE orientation subproblem of the first M-step has several local minima
# (mclust's MM starts from D = I and reaches the lower F; see bayesgmm/_mstep.py).
#
#   Rscript tests/data/make_mclust_orientation.R    (from the repository root; needs mclust, jsonlite)
suppressMessages({library(mclust); library(jsonlite)})

write.csv(swiss, "tests/data/swiss.csv", row.names = FALSE)
X <- as.matrix(read.csv("tests/data/swiss.csv"))
control <- emControl(tol = c(1e-14, 1e-14), itmax = c(200000L, 100000L))
tree <- hc(X, modelName = "VVV", use = "SVD")
partitions <- list()
fits <- list()
for (K in c(2, 4)) {
  labels <- as.vector(hclass(tree, K))
  partitions[[as.character(K)]] <- labels - 1L
  fit <- me(modelName = "EVE", data = X, z = unmap(labels), control = control, warn = FALSE)
  sigma <- fit$parameters$variance$sigma
  fits[[length(fits) + 1]] <- list(
    dataset = "swiss", model = "EVE", K = K, loglik = fit$loglik,
    n_iter = as.numeric(attr(fit, "info")[[1]]), return_code = attr(fit, "returnCode"),
    weights = as.vector(fit$parameters$pro), means = t(fit$parameters$mean),
    covariances = lapply(1:K, function(k) sigma[, , k])
  )
}
out <- list(
  mclust_version = as.character(packageVersion("mclust")),
  control = list(tol = control$tol, itmax = control$itmax),
  partitions = list(swiss = partitions),
  fits = fits
)
write_json(out, "tests/data/mclust_orientation.json", digits = NA, auto_unbox = TRUE, pretty = FALSE)
