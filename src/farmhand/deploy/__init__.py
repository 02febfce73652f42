"""Running farmhand's pyinfra deploys: targets, the engine subprocess, and its reports."""
