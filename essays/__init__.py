"""Essay trait scoring: six analytic traits of English-learner essays, 1.0-5.0, metric MCRMSE."""
