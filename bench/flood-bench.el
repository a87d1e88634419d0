;;; flood-bench.el --- Longest stall of Emacs under a flood of throwaway keys  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; emacs --batch -Q -L lisp -L test -L bench -l bench/flood-bench.el PORT
;; On the broker at 127.0.0.1:PORT, this Emacs runs federation while
;; 10,000 throwaway keys each send it one validly signed sync event
;; (signed by the module in a child Emacs, published by mosquitto_pub;
;; helpers from test/meta-log-federation-flood-test.el).  A 5 ms
;; repeating timer records when it fires; the longest gap between its
;; firings while the flood is processed is the longest time Emacs did
;; not get to run timers (or read input).  Also printed: how long the
;; flood took to process and whether trust.json grew.

;;; Code:

(require 'meta-log-federation-flood-test)
(require 'meta-log-federation-bench-target)

(setq meta-log-federation-test-broker-port (string-to-number (pop command-line-args-left))
      meta-log-federation-verbose nil)

(let* ((dir (make-temp-file "mlf-bench-flood-" t))
       (meta-log-federation-identity-file (expand-file-name "id.org" dir))
       (meta-log-federation-trust-file (expand-file-name "trust.json" dir))
       (meta-log-federation-display-name "bench-flood")
       (n meta-log-federation-flood-keys)
       (file (meta-log-federation-flood-generate (expand-file-name "flood.jsonl" dir) n)))
  (unwind-protect
      (progn
        (meta-log-federation-init (expand-file-name "bb.org" dir)
                                  (meta-log-federation-test-broker-url))
        (meta-log-federation-wait-until #'meta-log-federation-connected-p 10)
        (let* ((trusted-before (meta-log-federation-flood-trusted-ids))
               (trust-size-before (file-attribute-size
                                   (file-attributes meta-log-federation-trust-file)))
               (handled-before (meta-log-federation-flood-handled))
               (watch (meta-log-federation-flood-watch))
               (start (float-time))
               (pub (meta-log-federation-flood-publish file))
               (done (meta-log-federation-flood-wait
                      (lambda () (and (not (process-live-p pub))
                                      (null meta-log-federation--backlog)
                                      (>= (- (meta-log-federation-flood-handled) handled-before)
                                          n)))
                      600))
               (end (float-time))
               (stall (* 1000 (meta-log-federation-flood-longest-gap start end)))
               (trusted-after (meta-log-federation-flood-trusted-ids))
               (trust-size-after (file-attribute-size
                                  (file-attributes meta-log-federation-trust-file))))
          (cancel-timer watch)
          (unless done
            (error "The flood was not processed within 600 s (%d of %d events handled)"
                   (- (meta-log-federation-flood-handled) handled-before) n))
          (princ (format "flood: %d throwaway keys, one signed sync event each, processed in %.1f s; longest stall of Emacs (gap between 5 ms timer firings): %.0f ms %s\n"
                         n (- end start) stall
                         (meta-log-federation-bench-target "< 100 ms" (< stall 100))))
          (princ (format "flood: trust.json %s (before: %d entries, %s; after: %d entries, %s) %s\n"
                         (if (equal trusted-before trusted-after) "did not grow" "GREW")
                         (length trusted-before)
                         (if trust-size-before (format "%d bytes" trust-size-before) "no file")
                         (length trusted-after)
                         (if trust-size-after (format "%d bytes" trust-size-after) "no file")
                         (meta-log-federation-bench-target
                          "no new entry" (equal trusted-before trusted-after))))))
    (meta-log-federation-shutdown)
    (delete-directory dir t)))

;;; flood-bench.el ends here
