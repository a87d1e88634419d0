;;; federation-bench.el --- Federation figures of `make bench'  -*- lexical-binding: t; -*-

;;; Commentary:

;; emacs --batch -Q -L lisp -L test -L bench -l bench/federation-bench.el PORT
;; On the broker at 127.0.0.1:PORT, with this Emacs as one peer and
;; batch Emacs peers (test/meta-log-federation-test-peer.el) as others:
;; - discovery: from a new peer's `meta-log-federation-init' until this
;;   peer and a second running peer both see it online (5 new peers);
;; - signed and encrypted peer messages per second from this Emacs to
;;   another: the messages the receiver verified and decrypted (it says
;;   how many), divided by the time from the first send until its count
;;   is back here.

;;; Code:

(require 'meta-log-federation-test-helpers)
(require 'cl-lib)
(require 'meta-log-federation-bench-target)

(declare-function meta-log-federation--reset-max-call "meta-log-federation-module")

(defvar mlf-fed-port (string-to-number (pop command-line-args-left)))
(setq meta-log-federation-test-broker-port mlf-fed-port
      meta-log-federation-verbose nil)

(defun mlf-fed-peer (name)
  "Start a peer NAME (batch Emacs); return its process at once."
  (let ((dir (make-temp-file "mlf-bench-peer-" t)))
    (make-process
     :name name :buffer (generate-new-buffer (format " *%s*" name)) :noquery t
     :command (append (meta-log-federation-test-emacs-command
                       `(setq test-peer-name ,name test-peer-dir ,dir
                              test-peer-broker ,(meta-log-federation-test-broker-url)))
                      (list "-l" (expand-file-name "test/meta-log-federation-test-peer.el"))))))

(defun mlf-fed-line (proc regexp)
  "Return group 1 of REGEXP in PROC's report lines, or nil."
  (with-current-buffer (process-buffer proc)
    (save-excursion
      (goto-char (point-min))
      (and (re-search-forward (concat "^PEER: " regexp) nil t) (match-string 1)))))

(defun mlf-fed-wait-line (proc regexp timeout)
  "Wait up to TIMEOUT seconds for REGEXP from PROC; return group 1."
  (meta-log-federation-wait-until (lambda () (mlf-fed-line proc regexp)) timeout))

(let* ((dir (make-temp-file "mlf-bench-self-" t))
       (meta-log-federation-identity-file (expand-file-name "id.org" dir))
       (meta-log-federation-trust-file (expand-file-name "trust.json" dir))
       (meta-log-federation-display-name "bench-self")
       (seen (make-hash-table :test #'equal))
       (meta-log-federation-peer-online-functions
        (list (lambda (id _name) (puthash id (float-time) seen))))
       (witness nil)
       (times nil))
  (meta-log-federation-init (expand-file-name "bb.org" dir) (meta-log-federation-test-broker-url))
  (meta-log-federation-wait-until #'meta-log-federation-connected-p 10)
  ;; Module calls are timed from here: the start (making an identity, a BIP39
  ;; seed of 2,048 PBKDF2 rounds) happens once per person; it is printed apart.
  (let ((start (meta-log-federation-stats)))
    (princ (format "federation: longest module call of the one-time start (init, identity made): %d us CPU (%s)\n"
                   (plist-get start :max-call-cpu-us) (plist-get start :max-call-cpu-function))))
  (meta-log-federation--reset-max-call)
  (setq witness (mlf-fed-peer "witness"))
  (mlf-fed-wait-line witness "READY \\([0-9a-f]+\\)" 30)
  ;; Discovery.
  (dotimes (i 5)
    (let* ((p (mlf-fed-peer (format "newcomer-%d" i)))
           (id (mlf-fed-wait-line p "READY \\([0-9a-f]+\\)" 30))
           (init (string-to-number (mlf-fed-line p "INIT \\([0-9.]+\\)"))))
      (meta-log-federation-wait-until (lambda () (gethash id seen)) 10)
      (let ((w (mlf-fed-wait-line witness (format "ONLINE %s [^ ]+ \\([0-9.]+\\)" id) 10)))
        (push (* 1000 (- (max (gethash id seen) (string-to-number w)) init)) times))
      (kill-process p)))
  (setq times (sort times #'<))
  (princ (format "federation: discovery, new peer's init until every other peer sees it online (5 newcomers, 2 observers): median %.1f ms, max %.1f ms %s\n"
                 (nth 2 times) (car (last times))
                 (meta-log-federation-bench-target "< 200 ms, every newcomer"
                                                   (< (car (last times)) 200))))
  ;; Throughput of signed + encrypted peer messages.
  (let* ((n 5000)
         (witness-id (mlf-fed-line witness "READY \\([0-9a-f]+\\)"))
         (answer nil)
         (meta-log-federation-peer-message-functions
          (list (lambda (_from text) (setq answer text))))
         (payload (concat "bench:" (make-string 100 ?m)))
         (start (float-time)))
    (dotimes (_ n)
      (meta-log-federation-send-peer-message witness-id payload))
    (meta-log-federation-send-peer-message witness-id "bench-count")
    (unless (meta-log-federation-wait-until (lambda () (and answer (string-prefix-p "bench-count:" answer))) 120)
      (error "No answer from the receiving peer: %s" (with-current-buffer (process-buffer witness) (buffer-string))))
    (let* ((secs (- (float-time) start))
           (received (string-to-number (substring answer (length "bench-count:"))))
           (rate (/ received secs)))
      (princ (format "federation: signed+encrypted peer messages (100 B), received by another Emacs (verified, decrypted off its main thread) of those sent: %d of %d in %.3f s = %.0f received/s %s\n"
                     received n secs rate
                     (meta-log-federation-bench-target ">= 10,000/s, none lost"
                                                       (and (>= rate 10000) (= received n)))))))
  ;; The longest single call into the module, in each Emacs, over everything above:
  ;; a module call is time Emacs' main thread cannot answer the person.  Its CPU time is
  ;; the module's own work; its wall-clock time also counts the time the system gave the
  ;; other processes of this run (two cores, three busy Emacs and a broker).
  (let* ((witness-id (mlf-fed-line witness "READY \\([0-9a-f]+\\)"))
         (answer nil)
         (meta-log-federation-peer-message-functions
          (list (lambda (_from text) (setq answer text))))
         (mine (meta-log-federation-stats)))
    (meta-log-federation-send-peer-message witness-id "call-stats")
    (meta-log-federation-wait-until
     (lambda () (and answer (string-prefix-p "call-stats:" answer))) 30)
    (pcase-let* ((`(,their-name ,their-us ,their-cpu-name ,their-cpu-us)
                  (if (and answer (string-prefix-p "call-stats:" answer))
                      (split-string (substring answer (length "call-stats:")))
                    (list "?" "-1" "?" "-1")))
                 (their-us (string-to-number their-us))
                 (their-cpu-us (string-to-number their-cpu-us)))
      (princ (format "federation: longest single module call, CPU time (from after init): sender %d us (%s), receiver %d us (%s) %s\n"
                     (plist-get mine :max-call-cpu-us) (plist-get mine :max-call-cpu-function)
                     their-cpu-us their-cpu-name
                     (meta-log-federation-bench-target
                      "< 1 ms each" (and (< (plist-get mine :max-call-cpu-us) 1000)
                                         (<= 0 their-cpu-us 999)))))
      (princ (format "federation: longest single module call, wall-clock (from after init): sender %d us (%s), receiver %d us (%s) (no target: includes time the system gave other processes)\n"
                     (plist-get mine :max-call-us) (plist-get mine :max-call-function)
                     their-us their-name))))
  (kill-process witness)
  (meta-log-federation-shutdown))
