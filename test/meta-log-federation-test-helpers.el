;;; meta-log-federation-test-helpers.el --- A private mosquitto for the tests  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Each test run starts its own mosquitto on a free port of 127.0.0.1
;; and stops it at the end; tests that need the broker to vanish kill it
;; and start it again on the same port.

;;; Code:

(require 'ert)
(require 'cl-lib)
(require 'meta-log-federation)
(require 'meta-log-federation-broker)

(defvar meta-log-federation-test-broker-process nil
  "The running mosquitto process, or nil.")

(defvar meta-log-federation-test-broker-port nil
  "Port of the test broker.")

(defvar meta-log-federation-test-directory
  (make-temp-file "meta-log-federation-test-" t)
  "Scratch directory of this test run.")

;; mosquitto drops root privileges before it reads its certificates, so the
;; scratch directory must be readable by its user.
(set-file-modes meta-log-federation-test-directory #o755)

(defun meta-log-federation-test-free-port ()
  "Return a TCP port of 127.0.0.1 that is free right now."
  (let* ((probe (make-network-process :name "port-probe" :server t
                                      :host "127.0.0.1" :service t :noquery t))
         (port (process-contact probe :service)))
    (delete-process probe)
    port))

(defun meta-log-federation-test-mosquitto ()
  "Return the mosquitto executable, or signal how to install it."
  (or (executable-find "mosquitto")
      (cl-find-if #'file-executable-p '("/usr/sbin/mosquitto" "/usr/local/sbin/mosquitto"))
      (error "Mosquitto is not installed: apt-get install mosquitto mosquitto-clients")))

(defun meta-log-federation-test-port-open-p (port)
  "Return non-nil if something accepts connections on PORT of 127.0.0.1."
  (condition-case nil
      (progn (delete-process (open-network-stream "probe" nil "127.0.0.1" port))
             t)
    (error nil)))

(defvar meta-log-federation-test-broker-kind
  (if (equal (getenv "META_LOG_TEST_BROKER") "embedded") 'embedded 'mosquitto)
  "Which broker the tests run against: `mosquitto' or `embedded'.
META_LOG_TEST_BROKER=embedded runs them against the project's own
broker (meta-log-broker, rumqttd) instead of mosquitto.")

(defun meta-log-federation-test-broker-start (&optional port)
  "Start the test broker on PORT (default: a free one) and wait until it listens."
  (if (eq meta-log-federation-test-broker-kind 'embedded)
      (meta-log-federation-test-embedded-broker-start port)
    (meta-log-federation-test-mosquitto-start port)))

(defun meta-log-federation-test-embedded-broker-start (&optional port)
  "Start the project's broker in the foreground on PORT; wait until it listens."
  (let* ((port (or port meta-log-federation-test-broker-port
                   (meta-log-federation-test-free-port)))
         (program (meta-log-federation--broker-program)))
    (unless program
      (error "The embedded broker is not built: run `make broker'"))
    (setq meta-log-federation-test-broker-port port)
    (setq meta-log-federation-test-broker-process
          (make-process :name "test-embedded-broker"
                        :buffer (get-buffer-create " *test-embedded-broker*")
                        :command (list program "--port" (number-to-string port)
                                       "--state-file"
                                       (expand-file-name (format "broker-%d.json" port)
                                                         meta-log-federation-test-directory))
                        :noquery t))
    (unless (meta-log-federation-wait-until
             (lambda () (meta-log-federation-test-port-open-p port)) 10)
      (error "The embedded broker did not start on port %d: %s" port
             (with-current-buffer " *test-embedded-broker*" (buffer-string))))
    port))

(defun meta-log-federation-test-mosquitto-start (&optional port)
  "Start mosquitto on PORT (default: a free one) and wait until it listens."
  (let* ((port (or port meta-log-federation-test-broker-port
                   (meta-log-federation-test-free-port)))
         (conf (expand-file-name (format "mosquitto-%d.conf" port)
                                 meta-log-federation-test-directory)))
    (with-temp-file conf
      (insert (format "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_queued_messages 100000\nlog_dest stderr\n" port)))
    (set-file-modes conf #o644)
    (setq meta-log-federation-test-broker-port port)
    (setq meta-log-federation-test-broker-process
          (make-process :name "test-mosquitto"
                        :buffer (get-buffer-create " *test-mosquitto*")
                        :command (list (meta-log-federation-test-mosquitto) "-c" conf)
                        :noquery t))
    (unless (meta-log-federation-wait-until
             (lambda () (meta-log-federation-test-port-open-p port)) 10)
      (error "Mosquitto did not start on port %d: %s" port
             (with-current-buffer " *test-mosquitto*" (buffer-string))))
    port))

(defun meta-log-federation-test-openssl (&rest args)
  "Run openssl with ARGS in the scratch directory; signal on failure."
  (let ((default-directory meta-log-federation-test-directory))
    (with-temp-buffer
      (unless (zerop (apply #'call-process "openssl" nil t nil args))
        (error "Openssl %S failed: %s" args (buffer-string))))))

(defun meta-log-federation-test-make-certificates ()
  "Make a test CA and a server certificate for 127.0.0.1; return the CA file.
The server's key and certificate are server.key and server.crt."
  (let ((default-directory meta-log-federation-test-directory))
    (unless (file-exists-p "ca.crt")
      (meta-log-federation-test-openssl
       "req" "-x509" "-newkey" "rsa:2048" "-nodes" "-days" "2" "-subj" "/CN=meta-log test CA"
       "-keyout" "ca.key" "-out" "ca.crt"
       "-addext" "basicConstraints=critical,CA:TRUE" "-addext" "keyUsage=keyCertSign,cRLSign")
      (set-file-modes "ca.crt" #o644))
    (meta-log-federation-test-make-server-certificate
     "server" "127.0.0.1" "IP:127.0.0.1,DNS:localhost")
    (expand-file-name "ca.crt")))

(defun meta-log-federation-test-make-server-certificate (base common-name alt-names)
  "Make BASE.key and BASE.crt, signed by the test CA, for COMMON-NAME.
ALT-NAMES is the subjectAltName value, such as \"DNS:host\".  Return
the certificate's file name."
  (let ((default-directory meta-log-federation-test-directory)
        (ext (concat base ".ext")))
    (meta-log-federation-test-openssl
     "req" "-newkey" "rsa:2048" "-nodes" "-subj" (concat "/CN=" common-name)
     "-keyout" (concat base ".key") "-out" (concat base ".csr"))
    (with-temp-file ext
      (insert "subjectAltName=" alt-names "\nbasicConstraints=CA:FALSE\n"
              "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"))
    (meta-log-federation-test-openssl
     "x509" "-req" "-in" (concat base ".csr") "-CA" "ca.crt" "-CAkey" "ca.key" "-CAcreateserial"
     "-days" "2" "-extfile" ext "-out" (concat base ".crt"))
    (dolist (f (list (concat base ".crt") (concat base ".key")))
      (set-file-modes f #o644))
    (expand-file-name (concat base ".crt"))))

(defun meta-log-federation-test-tls-broker-start (&optional certificate-base)
  "Start a second mosquitto that speaks TLS only; return (PROCESS . PORT).
It presents CERTIFICATE-BASE.crt (default: server.crt, made for
127.0.0.1 by the test CA)."
  (let* ((ca (meta-log-federation-test-make-certificates))
         (base (or certificate-base "server"))
         (dir meta-log-federation-test-directory)
         (port (meta-log-federation-test-free-port))
         (conf (expand-file-name (format "mosquitto-tls-%d.conf" port) dir))
         (buffer (generate-new-buffer " *test-mosquitto-tls*")))
    (with-temp-file conf
      (insert (format "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n" port)
              (format "cafile %s\ncertfile %s\nkeyfile %s\n" ca
                      (expand-file-name (concat base ".crt") dir)
                      (expand-file-name (concat base ".key") dir))))
    (set-file-modes conf #o644)
    (let ((proc (make-process :name "test-mosquitto-tls" :buffer buffer
                              :command (list (meta-log-federation-test-mosquitto) "-c" conf)
                              :noquery t)))
      (unless (meta-log-federation-wait-until
               (lambda () (meta-log-federation-test-port-open-p port)) 10)
        (error "TLS mosquitto did not start: %s"
               (with-current-buffer buffer (buffer-string))))
      (cons proc port))))

(defun meta-log-federation-test-broker-kill ()
  "Kill the broker at once (SIGKILL), as a crash would."
  (when (process-live-p meta-log-federation-test-broker-process)
    (signal-process meta-log-federation-test-broker-process 'SIGKILL)
    (meta-log-federation-wait-until
     (lambda () (not (process-live-p meta-log-federation-test-broker-process))) 5)))

(defun meta-log-federation-test-broker-url ()
  "URL of the test broker."
  (format "mqtt://127.0.0.1:%d" meta-log-federation-test-broker-port))

(defun meta-log-federation-test-ensure-broker ()
  "Start the broker unless it runs."
  (unless (process-live-p meta-log-federation-test-broker-process)
    (meta-log-federation-test-broker-start)))

(defun meta-log-federation-test-connect (&rest options)
  "Connect to the test broker with OPTIONS and wait until connected."
  (meta-log-federation-test-ensure-broker)
  (apply #'meta-log-federation-mqtt-connect (meta-log-federation-test-broker-url) options)
  (should (meta-log-federation-wait-until #'meta-log-federation-mqtt-connected-p 10)))

(defun meta-log-federation-test-cleanup ()
  "Stop any connection left by a test."
  (meta-log-federation-shutdown))

(defmacro meta-log-federation-test-with-connection (options &rest body)
  "Connect with OPTIONS, run BODY, then shut down whatever happens."
  (declare (indent 1) (debug t))
  `(unwind-protect
       (progn (meta-log-federation-test-connect ,@options)
              ,@body)
     (meta-log-federation-test-cleanup)))

(defun meta-log-federation-test-subscribe-and-wait (filter handler &optional qos)
  "Subscribe HANDLER to FILTER with QOS and wait until the broker has it.
A probe message on a topic of its own proves the subscription is active."
  (meta-log-federation-mqtt-subscribe filter handler qos)
  (let* ((probe-topic (format "probe/%s" (random 1000000)))
         (seen nil))
    (meta-log-federation-mqtt-subscribe probe-topic (lambda (_t _p) (setq seen t)))
    (meta-log-federation-mqtt-publish probe-topic "probe")
    (should (meta-log-federation-wait-until (lambda () seen) 5))
    (meta-log-federation-mqtt-unsubscribe probe-topic)))

(defun meta-log-federation-test-emacs-command (&rest forms)
  "Return a command line running batch Emacs with the package and FORMS."
  (append (list (expand-file-name invocation-name invocation-directory)
                "--batch" "-Q" "-L" (file-name-directory (locate-library "meta-log-federation")))
          (cl-loop for f in forms append (list "--eval" (prin1-to-string f)))))

(defun meta-log-federation-test-stop-all ()
  "Stop the broker and delete the scratch directory (at the end of the run)."
  (ignore-errors (meta-log-federation-shutdown))
  (when (process-live-p meta-log-federation-test-broker-process)
    (kill-process meta-log-federation-test-broker-process))
  (ignore-errors (delete-directory meta-log-federation-test-directory t)))

(add-hook 'kill-emacs-hook #'meta-log-federation-test-stop-all)

(defun meta-log-federation-test-file-string (file)
  "Return FILE's bytes as a unibyte string, or nil if it is missing."
  (when (file-exists-p file)
    (with-temp-buffer
      (set-buffer-multibyte nil)
      (insert-file-contents-literally file)
      (buffer-string))))

(defun meta-log-federation-test-freeze-directory (dir on)
  "Make DIR unwritable (ON non-nil) or writable again; non-nil if that worked.
Root writes to a read-only directory, so for root the immutable
attribute is what makes a write fail; anyone else gets a read-only
directory."
  (if (zerop (user-uid))
      (and (executable-find "chattr")
           (zerop (call-process "chattr" nil nil nil (if on "+i" "-i") dir)))
    (set-file-modes dir (if on #o555 #o755))
    t))

(defconst meta-log-federation-test-cannot-freeze
  "running as root and chattr +i is not available here (it needs CAP_LINUX_IMMUTABLE on ext2/3/4, xfs or btrfs)"
  "Why a test that needs `meta-log-federation-test-freeze-directory' is skipped.")

(provide 'meta-log-federation-test-helpers)
;;; meta-log-federation-test-helpers.el ends here
