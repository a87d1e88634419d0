;;; meta-log-federation-walkthrough-test.el --- The README's first hour, as a person does it  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; The README's "Federation: two Emacs, step by step", run as written:
;; two Emacs processes, each with a HOME (so a `user-emacs-directory')
;; of its own, no broker URL anywhere, each evaluating the README's
;; three forms.  They must find one embedded broker and see each other
;; online.  The same with the default display names: both must be
;; pinned (trust on first use), neither held as an impersonation.
;;
;; The peers run with an XDG_RUNTIME_DIR of the test's own, so they
;; never meet a person's real broker, nor the broker of another test.
;; Needs the native module and `make broker'.

;;; Code:

(require 'ert)
(require 'cl-lib)
(require 'meta-log-federation-test-helpers)

(defconst meta-log-federation-walkthrough-test--readme-forms
  '((require 'meta-log-federation)
    (meta-log-federation-init))
  "The README's forms, without the `setq' of the display name.")

(defun meta-log-federation-walkthrough-test--peer-forms (name others &optional drop)
  "Forms of one walkthrough Emacs; NAME is its display name or nil.
After the README's forms, it waits (a bounded time) until it knows
OTHERS peers and, if DROP is non-nil, has dropped a message; then it
prints \"SELF NAME\", \"SEES NAME TRUST STATUS\" for each peer it
knows, and \"DONE\".  It keeps running until the file stop appears
in its `default-directory' (so that the others can see it too), then
shuts down."
  (append
   (list (car meta-log-federation-walkthrough-test--readme-forms))
   (and name `((setq meta-log-federation-display-name ,name)))
   '((defvar walkthrough-dropped nil)
     (add-hook 'meta-log-federation-dropped-functions
               (lambda (&rest _) (setq walkthrough-dropped t))))
   (cdr meta-log-federation-walkthrough-test--readme-forms)
   `((meta-log-federation-wait-until
      (lambda () (and (>= (length (meta-log-federation-peers)) ,others)
                      ,(if drop 'walkthrough-dropped t)))
      30)
     (princ (format "SELF %s\n" (meta-log-federation-effective-display-name)))
     (dolist (peer (meta-log-federation-peers))
       (princ (format "SEES %s %s %s\n" (plist-get peer :name) (plist-get peer :trust)
                      (plist-get peer :status))))
     (princ "DONE\n")
     (meta-log-federation-wait-until (lambda () (file-exists-p "stop")) 60)
     (meta-log-federation-shutdown))))

(defun meta-log-federation-walkthrough-test--environment (home runtime)
  "Return `process-environment' for a walkthrough Emacs.
HOME is its home directory, RUNTIME its XDG_RUNTIME_DIR.  Every
META_LOG_* variable is removed: the walkthrough gives no broker URL."
  (append (list (concat "HOME=" home) (concat "XDG_RUNTIME_DIR=" runtime))
          (cl-remove-if (lambda (v) (string-match-p "\\`\\(META_LOG_[A-Z_]*\\|HOME\\|XDG_RUNTIME_DIR\\)=" v))
                        process-environment)))

(defun meta-log-federation-walkthrough-test--run (names &optional others drops)
  "Run one walkthrough Emacs per entry of NAMES (a name or nil).
Each waits until it knows OTHERS peers (default: all the others); the
ones whose positions are in DROPS also until they dropped a message.
Return each one's output, in order, once every one has printed its
DONE line (or exited); the broker they shared is stopped."
  (unless (meta-log-federation--broker-program)
    (ert-skip "meta-log-broker is not built: run `make broker'"))
  (let* ((dir (make-temp-file "meta-log-walkthrough-" t))
         (runtime (expand-file-name "run" dir))
         (buffers nil)
         (processes nil))
    (make-directory runtime)
    (set-file-modes runtime #o700)
    (unwind-protect
        (progn
          (cl-loop for name in names
                   for i from 0
                   do (let* ((home (expand-file-name (format "home-%d" i) dir))
                             (buffer (generate-new-buffer (format " *walkthrough-%d*" i)))
                             (default-directory (file-name-as-directory dir))
                             (process-environment
                              (meta-log-federation-walkthrough-test--environment home runtime)))
                        (make-directory home)
                        (push buffer buffers)
                        (push (make-process
                               :name (format "walkthrough-%d" i) :buffer buffer :noquery t
                               :command (apply #'meta-log-federation-test-emacs-command
                                               (meta-log-federation-walkthrough-test--peer-forms
                                                name (or others (1- (length names)))
                                                (memq i drops))))
                              processes)))
          (setq buffers (nreverse buffers)
                processes (nreverse processes))
          (let ((deadline (+ (float-time) 90)))
            (while (and (< (float-time) deadline)
                        (cl-some (lambda (b p)
                                   (and (process-live-p p)
                                        (not (with-current-buffer b
                                               (save-excursion
                                                 (goto-char (point-min))
                                                 (re-search-forward "^DONE$" nil t))))))
                                 buffers processes))
              (accept-process-output nil 0.1)))
          (write-region "" nil (expand-file-name "stop" dir))
          (dolist (p processes)
            (let ((deadline (+ (float-time) 20)))
              (while (and (process-live-p p) (< (float-time) deadline))
                (accept-process-output p 0.1))))
          (mapcar (lambda (b) (with-current-buffer b (buffer-string))) buffers))
      (dolist (p processes) (when (process-live-p p) (delete-process p)))
      (let ((process-environment (cons (concat "XDG_RUNTIME_DIR=" runtime) process-environment))
            (meta-log-federation-broker-state-file nil))
        (ignore-errors (meta-log-federation-embedded-broker-stop)))
      (mapc #'kill-buffer buffers)
      (delete-directory dir t))))

(defun meta-log-federation-walkthrough-test--self (output)
  "Return the name that OUTPUT's Emacs announced, or fail showing OUTPUT."
  (if (string-match "^SELF \\(.*\\)$" output)
      (match-string 1 output)
    (ert-fail (list "no SELF line" output))))

(defun meta-log-federation-walkthrough-test--sees (output)
  "Return the sorted \"NAME TRUST STATUS\" lines of OUTPUT's Emacs."
  (let ((start 0) lines)
    (while (string-match "^SEES \\(.*\\)$" output start)
      (push (match-string 1 output) lines)
      (setq start (match-end 0)))
    (sort lines #'string<)))

(ert-deftest walkthrough::two-emacs-as-the-readme-says-see-each-other ()
  "Two Emacs, each with its own `user-emacs-directory', no broker URL, meet."
  (pcase-let ((`(,alice ,bob) (meta-log-federation-walkthrough-test--run '("alice" "bob"))))
    (should (equal (meta-log-federation-walkthrough-test--sees alice) '("bob pinned online")))
    (should (equal (meta-log-federation-walkthrough-test--sees bob) '("alice pinned online")))))

(ert-deftest walkthrough::default-names-do-not-collide ()
  "Three Emacs of one user with the default names all pin one another.
Three, because a name clash shows only to a third peer: it has pinned
the name for the first key when the second key announces it."
  (let* ((outputs (meta-log-federation-walkthrough-test--run '(nil nil nil)))
         (selves (mapcar #'meta-log-federation-walkthrough-test--self outputs))
         (base (format "%s@%s·" (user-login-name) (system-name))))
    (cl-loop for output in outputs
             for self in selves
             do (should (equal (meta-log-federation-walkthrough-test--sees output)
                               (sort (mapcar (lambda (name) (concat name " pinned online"))
                                             (cl-remove self selves :count 1))
                                     #'string<))))
    (dolist (self selves)
      (should (string-prefix-p base self)))
    (should (= (length (delete-dups (copy-sequence selves))) 3))))

(ert-deftest walkthrough::a-name-clash-warning-says-how-to-resolve-it ()
  "Two keys announcing one set name: the third Emacs warns, naming the fixes.
The warning names the new key in the commands that trust or block it,
and says how to rename."
  (let* ((outputs (meta-log-federation-walkthrough-test--run '("alice" "alice" "carol") 1 '(2)))
         (carol (nth 2 outputs))
         (sees (meta-log-federation-walkthrough-test--sees carol)))
    (should (equal sees '("alice pinned online")))
    (should (string-match "NEW key \\([0-9a-f]\\{64\\}\\)" carol))
    (let ((new (match-string 1 carol)))
      (should (string-search (format "(meta-log-federation-trust-peer \"%s\")" new) carol))
      (should (string-search (format "(meta-log-federation-block-peer \"%s\")" new) carol))
      (should (string-search "meta-log-federation-display-name" carol)))))

(ert-deftest walkthrough::runtime-directory-is-per-user-not-per-init-directory ()
  "The default state file follows XDG_RUNTIME_DIR, else the uid; never HOME."
  (let ((meta-log-federation-broker-state-file nil)
        (user-emacs-directory "/nonexistent/emacs.d/"))
    (let ((process-environment (cons "XDG_RUNTIME_DIR=/tmp" process-environment)))
      (should (equal (meta-log-federation--broker-state-file) "/tmp/meta-log/broker.json")))
    (let ((process-environment (cons "XDG_RUNTIME_DIR" process-environment))
          (temporary-file-directory "/var/tmp/"))
      (should (equal (meta-log-federation--broker-state-file)
                     (format "/var/tmp/meta-log-%d/broker.json" (user-uid)))))
    (let ((meta-log-federation-broker-state-file "/srv/elsewhere.json"))
      (should (equal (meta-log-federation--broker-state-file) "/srv/elsewhere.json")))))

(ert-deftest walkthrough::a-state-file-of-another-user-is-not-trusted ()
  "A broker state file owned by another user is ignored."
  (skip-unless (zerop (user-uid)))      ; giving a file away needs root
  (let* ((dir (make-temp-file "meta-log-foreign-" t))
         (file (expand-file-name "broker.json" dir)))
    (unwind-protect
        (progn
          (write-region "{\"pid\":1,\"port\":9,\"url\":\"mqtt://127.0.0.1:9\"}\n" nil file)
          (should (meta-log-federation--broker-read-state file))
          (should (zerop (call-process "chown" nil nil nil "65534" file)))
          (should-not (meta-log-federation--broker-read-state file)))
      (delete-directory dir t))))

(ert-deftest walkthrough::stopping-federation-forgets-the-identity ()
  "After a shutdown, init reads the identity file again (as its docstring says)."
  (let* ((dir (make-temp-file "meta-log-walkthrough-identity-" t))
         (meta-log-federation-identity-file (expand-file-name "identity.org" dir))
         (meta-log-federation-trust-file (expand-file-name "trust.json" dir))
         (meta-log-federation-sync-directory (expand-file-name "sync/" dir))
         (meta-log-federation-sync-state-directory (expand-file-name "sync-state/" dir))
         (meta-log-federation-verbose nil))
    (unwind-protect
        (progn
          (meta-log-federation-test-ensure-broker)
          (meta-log-federation-init (expand-file-name "blackboard.org" dir)
                                    (meta-log-federation-test-broker-url))
          (should meta-log-federation-identity)
          (meta-log-federation-shutdown)
          (should-not meta-log-federation-identity))
      (meta-log-federation-shutdown)
      (delete-directory dir t))))

(ert-deftest walkthrough::the-package-reads-the-images-environment ()
  "META_LOG_IDENTITY_FILE and META_LOG_SYNC_STATE_DIRECTORY set the options.
The trust file follows the identity unless it was customized; empty
variables change nothing."
  (let ((meta-log-federation-identity-file "/home/x/.emacs.d/meta-log/peer-identity.org")
        (meta-log-federation-sync-state-directory "/home/x/.emacs.d/meta-log/sync-state/")
        (meta-log-federation-trust-file
         (eval (car (get 'meta-log-federation-trust-file 'standard-value)) t)))
    (let ((process-environment (append '("META_LOG_IDENTITY_FILE=/var/lib/meta-log/identity/id.org"
                                         "META_LOG_SYNC_STATE_DIRECTORY=/var/lib/meta-log/sync/state")
                                       process-environment)))
      (meta-log-federation-apply-environment))
    (should (equal meta-log-federation-identity-file "/var/lib/meta-log/identity/id.org"))
    (should (equal meta-log-federation-trust-file "/var/lib/meta-log/identity/trust.json"))
    (should (equal meta-log-federation-sync-state-directory "/var/lib/meta-log/sync/state/"))
    (let ((meta-log-federation-trust-file "/mine/trust.json")
          (process-environment (append '("META_LOG_IDENTITY_FILE=/elsewhere/id.org"
                                         "META_LOG_SYNC_STATE_DIRECTORY=")
                                       process-environment)))
      (meta-log-federation-apply-environment)
      (should (equal meta-log-federation-trust-file "/mine/trust.json"))
      (should (equal meta-log-federation-sync-state-directory "/var/lib/meta-log/sync/state/")))))

(ert-deftest walkthrough::batch-emacs-never-starts-federation-from-the-environment ()
  "META_LOG_ENABLE_FEDERATION=1 starts nothing in batch Emacs, and says so."
  (let ((process-environment (cons "META_LOG_ENABLE_FEDERATION=1" process-environment))
        (meta-log-federation-verbose t)
        (started nil)
        (said nil))
    (cl-letf (((symbol-function 'meta-log-federation-init) (lambda (&rest _) (setq started t)))
              ((symbol-function 'message)
               (lambda (format-string &rest args) (push (apply #'format format-string args) said))))
      (meta-log-federation--start-from-environment))
    (should-not started)
    (should (cl-some (lambda (m) (string-match-p "call (meta-log-federation-init)" m)) said))))

(provide 'meta-log-federation-walkthrough-test)
;;; meta-log-federation-walkthrough-test.el ends here
