;;; meta-log-federation-broker-test.el --- Tests of the shared local broker  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Starts `meta-log-broker' through `meta-log-federation-embedded-broker-url'
;; with a state file of its own, talks to it with the mosquitto clients
;; and stops it.  Needs the broker built (`make broker'); skipped with
;; that reason otherwise.  Needs no native module.

;;; Code:

(require 'ert)
(require 'cl-lib)
(require 'meta-log-federation-broker)

(defmacro meta-log-federation-broker-test--with-state-file (&rest body)
  "Run BODY with a fresh broker state file; stop its broker afterwards."
  (declare (indent 0) (debug t))
  `(let* ((dir (progn (skip-unless (meta-log-federation--broker-program))
                      (make-temp-file "meta-log-broker-test-" t)))
          (meta-log-federation-broker-state-file (expand-file-name "broker.json" dir))
          (meta-log-federation-broker-idle-exit 120))
     (unwind-protect
         (progn ,@body)
       (ignore-errors (meta-log-federation-embedded-broker-stop))
       (delete-directory dir t))))

(defun meta-log-federation-broker-test--state ()
  "The broker state file's contents."
  (meta-log-federation--broker-read-state meta-log-federation-broker-state-file))

(defun meta-log-federation-broker-test--port (url)
  "The port of URL, which must have the broker's shape."
  (should (string-match "\\`mqtt://127\\.0\\.0\\.1:\\([0-9]+\\)\\'" url))
  (string-to-number (match-string 1 url)))

(defun meta-log-federation-broker-test--mosquitto (program &rest args)
  "Run mosquitto client PROGRAM with ARGS; return (STATUS . OUTPUT)."
  (unless (executable-find program)
    (ert-fail (format "%s is missing: apt-get install mosquitto-clients" program)))
  (with-temp-buffer
    (cons (apply #'call-process program nil t nil args) (buffer-string))))

(ert-deftest broker::start-find-publish-stop ()
  "The first call starts a broker, the second finds it; it serves; it stops."
  (meta-log-federation-broker-test--with-state-file
    (let* ((url (meta-log-federation-embedded-broker-url))
           (port (meta-log-federation-broker-test--port url))
           (state (meta-log-federation-broker-test--state))
           (pid (alist-get 'pid state)))
      (should (equal (alist-get 'url state) url))
      (should (equal (alist-get 'port state) port))
      (should (meta-log-federation--broker-pid-alive-p pid))
      (should (file-exists-p (concat meta-log-federation-broker-state-file ".lock")))
      ;; A second call finds the running broker and starts nothing.
      (let ((started 0))
        (cl-letf* ((make-process-orig (symbol-function 'make-process))
                   ((symbol-function 'make-process)
                    (lambda (&rest args)
                      (cl-incf started)
                      (apply make-process-orig args))))
          (should (equal (meta-log-federation-embedded-broker-url) url)))
        (should (= started 0)))
      (should (equal (alist-get 'pid (meta-log-federation-broker-test--state)) pid))
      ;; Real clients through it: a retained message reaches a later subscriber.
      (let ((p (number-to-string port)))
        (should (equal (meta-log-federation-broker-test--mosquitto
                        "mosquitto_pub" "-h" "127.0.0.1" "-p" p "-q" "1" "-r"
                        "-t" "canvasl/test/hello" "-m" "hello from ert")
                       '(0 . "")))
        (should (equal (meta-log-federation-broker-test--mosquitto
                        "mosquitto_sub" "-h" "127.0.0.1" "-p" p "-q" "1" "-v"
                        "-t" "canvasl/test/+" "-C" "1" "-W" "5")
                       '(0 . "canvasl/test/hello hello from ert\n"))))
      ;; Stop: SIGTERM, the broker removes its state file and closes its port.
      (should (meta-log-federation-embedded-broker-stop))
      (should-not (file-exists-p meta-log-federation-broker-state-file))
      (should-not (meta-log-federation--broker-port-open-p port))
      (should-not (meta-log-federation-embedded-broker-stop)))))

(ert-deftest broker::outlives-the-emacs-that-started-it ()
  "A broker started by another Emacs, now gone, is found and reused."
  (meta-log-federation-broker-test--with-state-file
    (let* ((lisp (file-name-directory (locate-library "meta-log-federation-broker")))
           (form `(progn
                    (require 'meta-log-federation-broker)
                    (setq meta-log-federation-broker-state-file
                          ,meta-log-federation-broker-state-file)
                    (setq meta-log-federation-broker-program
                          ,(meta-log-federation--broker-program))
                    (princ (meta-log-federation-embedded-broker-url))))
           (output (with-temp-buffer
                     (should (eq 0 (call-process
                                    (expand-file-name invocation-name invocation-directory)
                                    nil t nil "--batch" "-Q" "-L" lisp
                                    "--eval" (prin1-to-string form))))
                     (buffer-string)))
           (url (car (last (split-string output "\n" t)))))
      (meta-log-federation-broker-test--port url)
      ;; That Emacs has exited; its broker has not.
      (should (equal (meta-log-federation-embedded-broker-url) url))
      (should (meta-log-federation-embedded-broker-stop)))))

(ert-deftest broker::stale-state-file-is-replaced ()
  "A state file whose broker is gone does not stop a new start."
  (meta-log-federation-broker-test--with-state-file
    (make-directory (file-name-directory meta-log-federation-broker-state-file) t)
    (with-temp-file meta-log-federation-broker-state-file
      ;; pid 1 is never a broker; the port is the discard port, closed here.
      (insert "{\"pid\":1,\"port\":9,\"url\":\"mqtt://127.0.0.1:9\",\"started\":0}\n"))
    (let ((url (meta-log-federation-embedded-broker-url)))
      (should-not (equal url "mqtt://127.0.0.1:9"))
      (should (equal (alist-get 'url (meta-log-federation-broker-test--state)) url)))))

(ert-deftest broker::missing-program-says-how-to-build-it ()
  "Without the program, the error names `make broker'."
  (let* ((dir (make-temp-file "meta-log-broker-test-" t))
         (meta-log-federation-broker-state-file (expand-file-name "broker.json" dir))
         (meta-log-federation-broker-program nil))
    (unwind-protect
        (cl-letf (((symbol-function 'meta-log-federation--broker-program) #'ignore))
          (let ((err (should-error (meta-log-federation-embedded-broker-url)
                                   :type 'meta-log-federation-error)))
            (should (string-match-p "make broker" (cadr err)))))
      (delete-directory dir t))))

(ert-deftest broker::start-failure-is-reported-in-its-own-words ()
  "A broker that cannot start signals an error carrying its message."
  (meta-log-federation-broker-test--with-state-file
    ;; A state file path under a regular file cannot be created.
    (let* ((blocker (expand-file-name "not-a-directory"
                                      (file-name-directory meta-log-federation-broker-state-file)))
           (meta-log-federation-broker-state-file (expand-file-name "broker.json" blocker)))
      (write-region "" nil blocker)
      (let ((err (should-error (meta-log-federation-embedded-broker-url)
                               :type 'meta-log-federation-error)))
        (should (string-match-p "exit 2" (cadr err)))
        (should (string-match-p "cannot use state file" (cadr err)))))))

(provide 'meta-log-federation-broker-test)
;;; meta-log-federation-broker-test.el ends here
