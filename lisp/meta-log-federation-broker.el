;;; meta-log-federation-broker.el --- A local MQTT broker shared by the Emacsen of one machine  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; Federation needs an MQTT broker.  When none is configured, the
;; first Emacs on the machine starts `meta-log-broker' (a small
;; rumqttd-based program of this project, built by `make broker') and
;; later ones find it through a state file:
;;
;;   (meta-log-federation-mqtt-connect (meta-log-federation-embedded-broker-url))
;;
;; The broker listens on 127.0.0.1 only, outlives the Emacs that
;; started it, and exits by itself after
;; `meta-log-federation-broker-idle-exit' seconds without any client.
;; `meta-log-federation-embedded-broker-stop' stops it at once.
;;
;; The broker holds a lock beside its state file for as long as it
;; runs, so two Emacsen starting it at the same moment still end up
;; with one broker: the second start prints the first one's URL.
;;
;; The state file lives in a per-user runtime directory
;; ($XDG_RUNTIME_DIR/meta-log/, else meta-log-UID/ under the temporary
;; directory), not under `user-emacs-directory': every Emacs of one user
;; on one machine finds the same broker whatever its init directory or
;; HOME, and two users never share one by accident.  The broker creates
;; that directory 0700 and refuses it when another user owns it; a
;; state file owned by another user is never trusted.

;;; Code:

(require 'meta-log-federation-custom)
(require 'json)
(require 'seq)
(require 'subr-x)

(defcustom meta-log-federation-broker-program nil
  "The `meta-log-broker' executable, or nil to find it.
When nil, the first executable among these is used:
- target/release/meta-log-broker in the source tree, as `make broker'
  builds it (also under $CARGO_TARGET_DIR/release);
- meta-log-broker beside this file, where an installation (the Docker
  image, for one) puts it next to the native module;
- meta-log-broker on the variable `exec-path'."
  :type '(choice (const :tag "Find it" nil) file)
  :group 'meta-log-federation)

(defcustom meta-log-federation-broker-state-file nil
  "File through which the Emacsen of this user share one broker, or nil.
nil means broker.json in the per-user runtime directory (see
`meta-log-federation-broker-runtime-directory'), which every Emacs of
this user on this machine finds whatever its `user-emacs-directory'.
The running broker writes its pid, port and URL there and removes it
when it exits; it also keeps a lock on the file's name plus \".lock\".
Its error log, if any, is the same name with the extension \".log\".
The broker refuses a directory that another user owns or may write."
  :type '(choice (const :tag "Per-user runtime directory" nil) file)
  :group 'meta-log-federation)

(defcustom meta-log-federation-broker-idle-exit 300
  "Seconds without any connected client after which the broker exits.
Zero means never.  Applies to a broker started from now on."
  :type 'natnum
  :group 'meta-log-federation)

(defconst meta-log-federation--broker-start-timeout 10
  "Seconds to wait for a starting broker to listen.")

(defconst meta-log-federation--broker-directory
  (file-name-directory (or load-file-name buffer-file-name default-directory))
  "Directory of this file, where an installed broker sits beside the module.")

(defun meta-log-federation-broker-runtime-directory ()
  "Return this user's directory for the broker's state file.
$XDG_RUNTIME_DIR/meta-log/ when XDG_RUNTIME_DIR names an absolute
directory, else meta-log-UID/ under the variable
`temporary-file-directory'.  The broker creates it with mode 0700."
  (let ((runtime (getenv "XDG_RUNTIME_DIR")))
    (file-name-as-directory
     (if (and runtime (file-name-absolute-p runtime) (file-directory-p runtime))
         (expand-file-name "meta-log" runtime)
       (expand-file-name (format "meta-log-%d" (user-uid)) temporary-file-directory)))))

(defun meta-log-federation--broker-state-file ()
  "Return the absolute state file in use.
`meta-log-federation-broker-state-file' when set, else broker.json in
`meta-log-federation-broker-runtime-directory'."
  (expand-file-name (or meta-log-federation-broker-state-file
                        (expand-file-name "broker.json"
                                          (meta-log-federation-broker-runtime-directory)))))

(defun meta-log-federation--broker-program ()
  "Return the broker executable to run, or nil if there is none.
See `meta-log-federation-broker-program' for where it is looked for."
  (if meta-log-federation-broker-program
      (and (file-executable-p meta-log-federation-broker-program)
           meta-log-federation-broker-program)
    (let* ((top (file-name-directory
                 (directory-file-name meta-log-federation--broker-directory)))
           (target (getenv "CARGO_TARGET_DIR"))
           (candidates
            (delq nil
                  (list (and target (expand-file-name "release/meta-log-broker" target))
                        (expand-file-name "target/release/meta-log-broker" top)
                        (expand-file-name "meta-log-broker"
                                          meta-log-federation--broker-directory)))))
      (or (seq-find (lambda (f) (and (file-regular-p f) (file-executable-p f)))
                    candidates)
          (executable-find "meta-log-broker")))))

(defun meta-log-federation--broker-read-state (file)
  "Return the state FILE of a broker as an alist, or nil if unusable.
A file that another user owns is never trusted: it could name a broker
of theirs."
  (condition-case nil
      (let ((json-object-type 'alist)
            (json-key-type 'symbol))
        (with-temp-buffer
          (unless (eql (file-attribute-user-id (file-attributes file 'integer))
                       (user-uid))
            (error "Not ours"))
          (insert-file-contents file)
          (let ((state (json-read)))
            (and (consp state) (integerp (alist-get 'pid state))
                 (integerp (alist-get 'port state)) (stringp (alist-get 'url state))
                 state))))
    (error nil)))

(defun meta-log-federation--broker-pid-alive-p (pid)
  "Return non-nil if process PID is a running meta-log-broker.
A zombie does not count, nor another program that reused the pid of a
broker that died without removing its state file."
  (let ((attributes (process-attributes pid)))
    (and attributes
         (not (equal (alist-get 'state attributes) "Z"))
         (string-match-p "meta-log-broker"
                         (concat (alist-get 'comm attributes) " "
                                 (alist-get 'args attributes))))))

(defun meta-log-federation--broker-port-open-p (port)
  "Return non-nil if something accepts TCP connections on PORT of 127.0.0.1."
  (condition-case nil
      (let ((probe (open-network-stream "meta-log-broker-probe" nil "127.0.0.1" port
                                        :nowait nil)))
        (delete-process probe)
        t)
    (error nil)))

(defun meta-log-federation--broker-live-state (file)
  "Return the state in FILE if it names a running broker, else nil.
Running means that its process exists and its port accepts connections."
  (let ((state (and (file-exists-p file) (meta-log-federation--broker-read-state file))))
    (and state
         (meta-log-federation--broker-pid-alive-p (alist-get 'pid state))
         (meta-log-federation--broker-port-open-p (alist-get 'port state))
         state)))

(defun meta-log-federation--broker-output-url (buffer)
  "Return the URL announced in the output of the broker in BUFFER, or nil."
  (with-current-buffer buffer
    (save-excursion
      (goto-char (point-min))
      (and (re-search-forward
            "^meta-log-broker \\(?:listening\\|already running\\) on \\(mqtt://[^ \n]+\\)"
            nil t)
           (match-string 1)))))

(defun meta-log-federation--broker-start (program file)
  "Start PROGRAM with state FILE and return the URL it serves.
Signal `meta-log-federation-error' with its own words if it fails."
  ;; The broker must outlive this Emacs: later Emacsen share it.  Emacs
  ;; kills the processes it started when it exits, and stops reading a
  ;; process's pipe once that process has exited, so neither a plain
  ;; `make-process' of the broker nor `setsid -f' (which would hide the
  ;; broker's answer) fits.  `--detach' makes the broker fork into a
  ;; session of its own before it starts; the process started here is
  ;; only the launcher, which prints the "listening on" line (or the
  ;; error) and exits once the broker listens.  `make-process' rather
  ;; than `call-process', so that the wait is bounded and Emacs keeps
  ;; serving its other processes meanwhile.
  (let* ((buffer (generate-new-buffer " *meta-log-broker-start*"))
         (log (concat (file-name-sans-extension file) ".log"))
         (command (list program "--detach" "--port" "0"
                        "--state-file" file
                        "--idle-exit" (number-to-string meta-log-federation-broker-idle-exit)
                        "--log-file" log))
         (process (make-process :name "meta-log-broker" :buffer buffer :command command
                                :connection-type 'pipe :noquery t :sentinel #'ignore))
         (deadline (+ (float-time) meta-log-federation--broker-start-timeout))
         url)
    (unwind-protect
        (progn
          (while (and (not (setq url (meta-log-federation--broker-output-url buffer)))
                      (process-live-p process)
                      (< (float-time) deadline))
            (accept-process-output process 0.05))
          ;; Output that arrived with the exit.
          (accept-process-output process 0)
          (or url
              (setq url (meta-log-federation--broker-output-url buffer))
              (let ((state (meta-log-federation--broker-live-state file)))
                (and state (alist-get 'url state)))
              (signal 'meta-log-federation-error
                      (list (format "meta-log-broker did not start%s: %s"
                                    (if (process-live-p process)
                                        (format " within %d s"
                                                meta-log-federation--broker-start-timeout)
                                      (format " (exit %s)" (process-exit-status process)))
                                    (let ((text (string-trim
                                                 (with-current-buffer buffer (buffer-string)))))
                                      (if (string-empty-p text) "no output" text))))))
          url)
      ;; Only the launcher: the broker itself runs in a session of its own.
      (when (process-live-p process)
        (delete-process process))
      (kill-buffer buffer))))

;;;###autoload
(defun meta-log-federation-embedded-broker-url ()
  "Return the URL of this machine's shared broker, starting it if needed.
If the state file (see `meta-log-federation-broker-state-file') names
a broker that runs,
return its URL; otherwise start `meta-log-broker' (see
`meta-log-federation-broker-program'), which keeps running after this
Emacs exits, and return its URL once it listens."
  (let ((file (meta-log-federation--broker-state-file)))
    (let ((state (meta-log-federation--broker-live-state file)))
      (if state
          (alist-get 'url state)
        (let ((program (meta-log-federation--broker-program)))
          (unless program
            (signal 'meta-log-federation-error
                    (list (format "meta-log-broker not found: build it with `make broker' in %s (needs cargo), or set `meta-log-federation-broker-program'"
                                  (file-name-directory
                                   (directory-file-name
                                    meta-log-federation--broker-directory))))))
          (meta-log-federation--broker-start program file))))))

;;;###autoload
(defun meta-log-federation-embedded-broker-stop ()
  "Stop this machine's shared broker; return non-nil if one was running.
Sends SIGTERM to the pid in the state file (see
`meta-log-federation-broker-state-file') and
waits (at most five seconds) until the broker has removed that file
and exited.
Every Emacs connected to it loses its broker."
  (interactive)
  (let* ((file (meta-log-federation--broker-state-file))
         (state (and (file-exists-p file) (meta-log-federation--broker-read-state file)))
         (pid (alist-get 'pid state))
         (stopped (and pid (meta-log-federation--broker-pid-alive-p pid)
                       (eq 0 (signal-process pid 'SIGTERM)))))
    (when stopped
      ;; It removes its state file, then exits (closing its port): wait for both.
      (let ((deadline (+ (float-time) 5)))
        (while (and (or (file-exists-p file)
                        (meta-log-federation--broker-pid-alive-p pid))
                    (< (float-time) deadline))
          (accept-process-output nil 0.05))))
    (when (called-interactively-p 'interactive)
      (message "meta-log-federation: %s"
               (if stopped (format "broker (pid %d) stopped" pid) "no broker was running")))
    stopped))

(provide 'meta-log-federation-broker)
;;; meta-log-federation-broker.el ends here
