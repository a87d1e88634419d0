;;; meta-log-federation-bench-target.el --- How every Elisp bench reports a target  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; One format for a target next to a figure, used by every bench/*.el:
;; "(target >= 5,000/s: met)" or "(target >= 5,000/s: MISSED)".  The
;; Rust benches print the same words (`merge::bench::target').

;;; Code:

(defun meta-log-federation-bench-target (description met)
  "Return \"(target DESCRIPTION: met)\", or MISSED instead of met unless MET."
  (format "(target %s: %s)" description (if met "met" "MISSED")))

(provide 'meta-log-federation-bench-target)
;;; meta-log-federation-bench-target.el ends here
