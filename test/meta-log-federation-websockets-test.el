;;; meta-log-federation-websockets-test.el --- MQTT over WebSockets  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Broker URLs ws:// and wss:// against mosquitto's websockets
;; listener: two Emacs peers federate over ws://, and a wss:// connection
;; trusts the test CA it is given (and no other CA).

;;; Code:

(require 'meta-log-federation-federation-test)
(require 'meta-log-federation-mqtt-test)

(defun meta-log-federation-test-ws-broker-start (&optional tls)
  "Start a mosquitto with a websockets listener; return (PROCESS . PORT).
With TLS non-nil the listener speaks TLS with server.crt, made for
127.0.0.1 by the test CA (`meta-log-federation-test-make-certificates').
The listener binds every interface: mosquitto 2.0's websockets listener
ignores the address it is given.  A plain listener on another port of
127.0.0.1 comes first: mosquitto 2.0.11 refuses to start with a
websockets listener alone (\"Unable to start any listening sockets\")."
  (let* ((ca (and tls (meta-log-federation-test-make-certificates)))
         (dir meta-log-federation-test-directory)
         (port (meta-log-federation-test-free-port))
         (conf (expand-file-name (format "mosquitto-ws-%d.conf" port) dir))
         (buffer (generate-new-buffer " *test-mosquitto-ws*")))
    (with-temp-file conf
      (insert (format "listener %d 127.0.0.1\n" (meta-log-federation-test-free-port))
              (format "listener %d 127.0.0.1\nprotocol websockets\n" port)
              "allow_anonymous true\npersistence false\n")
      (when tls
        ;; Settings after the websockets listener apply to it.
        (insert (format "cafile %s\ncertfile %s\nkeyfile %s\n" ca
                        (expand-file-name "server.crt" dir)
                        (expand-file-name "server.key" dir)))))
    (set-file-modes conf #o644)
    (let ((proc (make-process :name "test-mosquitto-ws" :buffer buffer
                              :command (list (meta-log-federation-test-mosquitto) "-c" conf)
                              :noquery t)))
      (unless (meta-log-federation-wait-until
               (lambda () (meta-log-federation-test-port-open-p port)) 10)
        (error "Websockets mosquitto did not start: %s"
               (with-current-buffer buffer (buffer-string))))
      (cons proc port))))

(ert-deftest websockets::two-emacs-peers-meet-over-ws ()
  (let* ((broker (meta-log-federation-test-ws-broker-start))
         (url (format "ws://127.0.0.1:%d/mqtt" (cdr broker))))
    (unwind-protect
        ;; Both peers, this Emacs and a batch Emacs, are given the ws:// URL.
        (cl-letf (((symbol-function 'meta-log-federation-test-broker-url) (lambda () url)))
          (meta-log-federation-test-with-federation
            (let* ((got nil)
                   (meta-log-federation-peer-message-functions
                    (list (lambda (from text) (push (cons from text) got))))
                   (bob (meta-log-federation-test-start-peer "bob-ws"))
                   (bob-id (process-get bob 'peer-id))
                   (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id)))
              ;; This Emacs is connected through the websockets listener.
              (should (equal meta-log-federation-mqtt-broker url))
              ;; Each sees the other online, through the websockets listener.
              (should (meta-log-federation-wait-until
                       (lambda () (eq (meta-log-federation-test-status bob-id) 'online)) 20))
              (should (meta-log-federation-wait-until
                       (lambda () (meta-log-federation-test-peer-line bob (concat "ONLINE " me)))
                       20))
              ;; A signed, encrypted peer message and its answer.
              (meta-log-federation-send-peer-message bob-id "echo:over-websockets")
              (should (meta-log-federation-wait-until
                       (lambda () (equal (cdr (assoc bob-id got)) "echoed:over-websockets"))
                       20)))))
      (delete-process (car broker)))))

(ert-deftest websockets::wss-trusts-the-given-ca-only ()
  (meta-log-federation-test-skip-unless-tls)
  (let* ((broker (meta-log-federation-test-ws-broker-start t))
         (url (format "wss://127.0.0.1:%d/mqtt" (cdr broker)))
         (ca (expand-file-name "ca.crt" meta-log-federation-test-directory))
         (c (meta-log-federation-test-collector)))
    (unwind-protect
        (progn
          (meta-log-federation-mqtt-connect url :ca-file ca)
          (should (meta-log-federation-wait-until #'meta-log-federation-mqtt-connected-p 10))
          (meta-log-federation-test-subscribe-and-wait "wss/t" (car c) 1)
          (meta-log-federation-mqtt-publish "wss/t" "over secure WebSockets" 1)
          (should (meta-log-federation-wait-until (lambda () (funcall (cdr c))) 5))
          (should (equal (funcall (cdr c)) '(("wss/t" . "over secure WebSockets"))))
          (meta-log-federation-shutdown)
          ;; Without our CA the server is not trusted.
          (should (string-match-p meta-log-federation-test-untrusted-regexp
                                  (meta-log-federation-test-connection-error url))))
      (meta-log-federation-shutdown)
      (delete-process (car broker)))))

(provide 'meta-log-federation-websockets-test)
;;; meta-log-federation-websockets-test.el ends here
