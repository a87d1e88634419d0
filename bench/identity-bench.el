;;; identity-bench.el --- Identity and signed-event figures of `make bench'  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run as `emacs --batch -Q -L ./lisp -L ./bench -l bench/identity-bench.el'.
;; Prints, through the Elisp API: signatures/s of
;; `meta-log-federation-sign-event' (5,000 events), verifications/s of
;; `meta-log-federation-verify-events' on 20,000 events (the JSON strings
;; are made beforehand; only the call is timed) and of single
;; `meta-log-federation-verify-event' calls, the bare libsecp256k1
;; Schnorr verification rate measured inside the module on the same
;; number of signatures, the ratio batch/bare (target >= 75%), and the
;; median time of `meta-log-federation-identity-from-mnemonic' (target
;; < 50 ms).  Timed runs are the best of three, with garbage collection
;; done before each and deferred during it, so that the figures measure
;; the code rather than the collector or a neighbour on the CPU.

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation)
(require 'meta-log-federation-bench-target)

(defvar mlf-ibench-phrase
  "leader monkey parrot ring guide accident before fence cannon height naive bean"
  "Recovery phrase of the identity that signs the benchmark's events.")

(defvar mlf-ibench-sign-n 5000 "Events signed for the signing rate.")
(defvar mlf-ibench-verify-n 20000 "Events verified for the verification rates.")
(defvar mlf-ibench-runs 3 "Timed runs of each measurement; the best counts.")

(defun mlf-ibench-group (n)
  "Return the integer N rounded, with thousands separated by commas."
  (let ((s (number-to-string (round n)))
        (out nil))
    (while (> (length s) 3)
      (push (substring s -3) out)
      (setq s (substring s 0 -3)))
    (mapconcat #'identity (cons s out) ",")))

(defun mlf-ibench-time (function)
  "Call FUNCTION with garbage collection deferred; return seconds taken."
  (garbage-collect)
  (let ((gc-cons-threshold most-positive-fixnum)
        (start (float-time)))
    (funcall function)
    (- (float-time) start)))

(defun mlf-ibench-best (function)
  "Run FUNCTION `mlf-ibench-runs' times; return the least seconds it took."
  (let ((best nil))
    (dotimes (_ mlf-ibench-runs)
      (let ((secs (mlf-ibench-time function)))
        (setq best (if best (min best secs) secs))))
    best))

(defun mlf-ibench-content (i)
  "Content of benchmark event number I (about the size of a chat message)."
  (format "benchmark event number %d, with some ordinary text in it" i))

(let* ((id (meta-log-federation-identity-from-mnemonic mlf-ibench-phrase))
       (tags '(("t" "meta-log")))
       (events nil))
  (princ (format "identity: %s events signed by %s...\n" (mlf-ibench-group mlf-ibench-verify-n)
                 (substring (meta-log-federation-identity-peer-id id) 0 16)))

  ;; 1. Signing through Elisp.
  (let* ((secs (mlf-ibench-best
                (lambda ()
                  (dotimes (i mlf-ibench-sign-n)
                    (meta-log-federation-sign-event id 1 (mlf-ibench-content i) tags)))))
         (rate (/ mlf-ibench-sign-n secs)))
    (princ (format "identity: sign through Elisp: %s/s (%d events, %.3f s)\n"
                   (mlf-ibench-group rate) mlf-ibench-sign-n secs)))

  ;; The events to verify, made beforehand.
  (dotimes (i mlf-ibench-verify-n)
    (push (meta-log-federation-sign-event id 1 (mlf-ibench-content i) tags) events))
  (setq events (nreverse events))

  ;; 2. Batch verification, 3. single calls, 4. bare libsecp256k1.
  (let* ((results nil)
         (batch-secs (mlf-ibench-best
                      (lambda () (setq results (meta-log-federation-verify-events events)))))
         (valid (cl-count-if #'identity results))
         (single-ok 0)
         (single-secs (mlf-ibench-best
                       (lambda ()
                         (setq single-ok 0)
                         (dolist (e events)
                           (when (meta-log-federation-verify-event e)
                             (setq single-ok (1+ single-ok)))))))
         (bare (let ((best 0))
                 (dotimes (_ mlf-ibench-runs)
                   (setq best (max best (meta-log-federation--bench-bare-verify
                                         mlf-ibench-verify-n))))
                 best))
         (batch (/ mlf-ibench-verify-n batch-secs))
         (single (/ mlf-ibench-verify-n single-secs))
         (ratio (* 100 (/ batch bare))))
    (unless (and (= valid mlf-ibench-verify-n) (= single-ok mlf-ibench-verify-n))
      (error "Benchmark events did not all verify: %d and %d of %d"
             valid single-ok mlf-ibench-verify-n))
    (princ (format "identity: verify through Elisp batch vs bare libsecp256k1 on the same signatures: %s/s = %.0f%% of bare %s/s %s\n"
                   (mlf-ibench-group batch) ratio (mlf-ibench-group bare)
                   (meta-log-federation-bench-target ">= 75%" (>= ratio 75))))
    (princ (format "identity: verify through Elisp, one call per event: %s/s (%.0f%% of bare)\n"
                   (mlf-ibench-group single) (* 100 (/ single bare))))
    (princ (format "identity: bare libsecp256k1 Schnorr verify in the module: %s/s\n"
                   (mlf-ibench-group bare))))

  ;; 5. Mnemonic -> identity, median of 21.
  (let* ((times (sort (cl-loop repeat 21
                               collect (mlf-ibench-time
                                        (lambda ()
                                          (meta-log-federation-identity-from-mnemonic
                                           mlf-ibench-phrase))))
                      #'<))
         (median-ms (* 1000 (nth 10 times))))
    (princ (format "identity: mnemonic -> identity median: %.2f ms %s\n"
                   median-ms (meta-log-federation-bench-target "< 50 ms" (< median-ms 50))))))

;;; identity-bench.el ends here
