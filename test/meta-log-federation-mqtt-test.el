;;; meta-log-federation-mqtt-test.el --- MQTT through a real broker  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; ert tests of the MQTT functions against the private mosquitto that
;; `meta-log-federation-test-helpers' starts.  Names read `area::case'.

;;; Code:

(require 'meta-log-federation-test-helpers)

(defun meta-log-federation-test-collector ()
  "Return (HANDLER . GETTER): HANDLER records messages, GETTER lists them in order."
  (let ((got nil))
    (cons (lambda (topic payload) (push (cons topic payload) got))
          (lambda () (reverse got)))))

(ert-deftest module::version-matches-elisp ()
  (should (equal (meta-log-federation-version) meta-log-federation-elisp-version))
  (let ((meta-log-federation-elisp-version "0.0.0-other"))
    (let ((err (should-error (meta-log-federation--check-version)
                             :type 'meta-log-federation-error)))
      (should (string-match-p "restart Emacs" (cadr err)))
      (should (string-match-p "make" (cadr err))))))

(ert-deftest module::missing-module-names-the-build-command ()
  (let ((meta-log-federation-always-compile-module nil)
        (file "/nonexistent/meta-log-federation-module.so"))
    (let ((err (should-error (meta-log-federation--ensure-module-file file)
                             :type 'meta-log-federation-module-missing)))
      (should (string-match-p "make" (cadr err)))
      (should (string-match-p (regexp-quote file) (cadr err))))))

(ert-deftest mqtt::malformed-url-signals-at-once ()
  (dolist (url '("localhost:1883" "http://h" "mqtt://" "mqtt://h:99999" "mqtt://h/x"))
    (let ((err (should-error (meta-log-federation-mqtt-connect url)
                             :type 'meta-log-federation-bad-url)))
      (should (string-match-p "expected mqtt://" (cadr err)))))
  (should-not (meta-log-federation--mqtt-active-p))
  (should-error (meta-log-federation-mqtt-connect "mqtt://h" :bogus 1))
  (should-error (meta-log-federation-mqtt-connect "mqtt://h" :client-id)))

(ert-deftest mqtt::publish-without-connection-signals ()
  (meta-log-federation-shutdown)
  (should-error (meta-log-federation-mqtt-publish "a/b" "x")
                :type 'meta-log-federation-not-connected))

(ert-deftest mqtt::round-trip ()
  (meta-log-federation-test-with-connection ()
    (let ((c (meta-log-federation-test-collector)))
      (meta-log-federation-test-subscribe-and-wait "rt/topic" (car c))
      (meta-log-federation-mqtt-publish "rt/topic" "hello, world")
      (meta-log-federation-mqtt-publish "rt/topic" "ünïcødé ✓")
      (should (meta-log-federation-wait-until
               (lambda () (= 2 (length (funcall (cdr c))))) 5))
      (should (equal (funcall (cdr c))
                     '(("rt/topic" . "hello, world") ("rt/topic" . "ünïcødé ✓")))))))

(ert-deftest mqtt::binary-payload-survives ()
  (meta-log-federation-test-with-connection ()
    (let ((c (meta-log-federation-test-collector))
          (bytes (apply #'unibyte-string (number-sequence 0 255))))
      (meta-log-federation-test-subscribe-and-wait "bin/x" (car c))
      (meta-log-federation-mqtt-publish "bin/x" bytes 1)
      (should (meta-log-federation-wait-until (lambda () (funcall (cdr c))) 5))
      (let ((payload (cdar (funcall (cdr c)))))
        (should-not (multibyte-string-p payload))
        (should (equal payload bytes))))))

(ert-deftest mqtt::wildcards-and-overlapping-handlers ()
  (meta-log-federation-test-with-connection ()
    (let ((hash (meta-log-federation-test-collector))
          (plus (meta-log-federation-test-collector))
          (exact (meta-log-federation-test-collector))
          (second-on-hash (meta-log-federation-test-collector)))
      (meta-log-federation-mqtt-subscribe "wc/#" (car hash))
      (meta-log-federation-mqtt-subscribe "wc/#" (car second-on-hash))
      (meta-log-federation-mqtt-subscribe "wc/+/leaf" (car plus))
      (meta-log-federation-test-subscribe-and-wait "wc/a/leaf" (car exact))
      (dolist (topic '("wc/a/leaf" "wc/b/leaf" "wc/b/other" "wc/x/y/leaf" "elsewhere/leaf"))
        (meta-log-federation-mqtt-publish topic topic 1))
      ;; A last message that every filter matches: once it has reached each
      ;; handler, everything published before it has been delivered too (one
      ;; connection, QoS 1: in order), so what is missing was never sent.
      (meta-log-federation-mqtt-publish "wc/z/leaf" "end" 1)
      (dolist (c (list hash second-on-hash plus))
        (should (meta-log-federation-wait-until
                 (lambda () (assoc "wc/z/leaf" (funcall (cdr c)))) 5)))
      (should (equal (mapcar #'car (funcall (cdr hash)))
                     '("wc/a/leaf" "wc/b/leaf" "wc/b/other" "wc/x/y/leaf" "wc/z/leaf")))
      (should (equal (funcall (cdr hash)) (funcall (cdr second-on-hash))))
      (should (equal (mapcar #'car (funcall (cdr plus))) '("wc/a/leaf" "wc/b/leaf" "wc/z/leaf")))
      (should (equal (mapcar #'car (funcall (cdr exact))) '("wc/a/leaf"))))))

(ert-deftest mqtt::unsubscribe-stops-delivery ()
  (meta-log-federation-test-with-connection ()
    (let ((c (meta-log-federation-test-collector))
          (probe (meta-log-federation-test-collector)))
      (meta-log-federation-test-subscribe-and-wait "un/sub" (car c))
      (should (meta-log-federation-mqtt-unsubscribe "un/sub"))
      (should-not (meta-log-federation-mqtt-unsubscribe "never/subscribed"))
      (meta-log-federation-test-subscribe-and-wait "un/probe" (car probe))
      (meta-log-federation-mqtt-publish "un/sub" "lost")
      (meta-log-federation-mqtt-publish "un/probe" "after")
      (should (meta-log-federation-wait-until (lambda () (funcall (cdr probe))) 5))
      (should-not (funcall (cdr c))))))

(ert-deftest mqtt::qos1-delivers-every-message-in-order ()
  (meta-log-federation-test-with-connection ()
    (let ((c (meta-log-federation-test-collector)))
      (meta-log-federation-test-subscribe-and-wait "q1/t" (car c) 1)
      (dotimes (i 500)
        (meta-log-federation-mqtt-publish "q1/t" (number-to-string i) 1))
      (should (meta-log-federation-wait-until
               (lambda () (= 500 (length (funcall (cdr c))))) 10))
      (should (equal (mapcar #'cdr (funcall (cdr c)))
                     (mapcar #'number-to-string (number-sequence 0 499))))
      (should (meta-log-federation-wait-until
               (lambda () (zerop (plist-get (meta-log-federation-stats) :pending))) 5)))))

(ert-deftest mqtt::retained-message-reaches-later-subscriber ()
  (meta-log-federation-test-with-connection ()
    (let ((topic (format "ret/%d" (random 100000)))
          (c (meta-log-federation-test-collector)))
      (meta-log-federation-mqtt-publish topic "kept" 1 t)
      (should (meta-log-federation-wait-until
               (lambda () (zerop (plist-get (meta-log-federation-stats) :pending))) 5))
      (meta-log-federation-mqtt-subscribe topic (car c) 1)
      (should (meta-log-federation-wait-until (lambda () (funcall (cdr c))) 5))
      (should (equal (funcall (cdr c)) (list (cons topic "kept"))))
      ;; An empty retained publish clears it, as MQTT says.
      (meta-log-federation-mqtt-publish topic "" 1 t))))

(ert-deftest mqtt::invalid-topics-signal ()
  (meta-log-federation-test-with-connection ()
    (dolist (topic (list "" "a/+/b" "a/#" (make-string 70000 ?x)))
      (should-error (meta-log-federation-mqtt-publish topic "x")
                    :type 'meta-log-federation-bad-topic))
    (dolist (filter '("" "a/#/b" "a+" "a/b#"))
      (should-error (meta-log-federation-mqtt-subscribe filter #'ignore)
                    :type 'meta-log-federation-bad-topic))
    (should-error (meta-log-federation-mqtt-publish "ok/topic" "x" 3))
    (should-error (meta-log-federation-mqtt-publish "ok/topic" 42)
                  :type 'wrong-type-argument)
    ;; The connection is still fine after all that.
    (should (meta-log-federation-mqtt-connected-p))))

(ert-deftest mqtt::oversized-payload-is-refused ()
  (meta-log-federation-test-with-connection (:max-packet-size 2048)
    (let ((c (meta-log-federation-test-collector)))
      (meta-log-federation-test-subscribe-and-wait "big/x" (car c) 1)
      (let ((err (should-error (meta-log-federation-mqtt-publish "big/x" (make-string 4096 ?a)))))
        (should (string-match-p "packet limit" (cadr err))))
      ;; Under the limit: published, and it arrives whole, alone (the refused
      ;; one, published before it on the same connection, never went out).
      (meta-log-federation-mqtt-publish "big/x" (make-string 1000 ?a) 1)
      (should (meta-log-federation-wait-until (lambda () (funcall (cdr c))) 5))
      (should (equal (funcall (cdr c)) (list (cons "big/x" (make-string 1000 ?a))))))))

(ert-deftest mqtt::third-party-client-both-ways ()
  (meta-log-federation-test-with-connection ()
    (let* ((c (meta-log-federation-test-collector))
           (sub-out (generate-new-buffer " *mosquitto_sub*"))
           (sub (make-process
                 :name "mosquitto_sub" :buffer sub-out :noquery t :sentinel #'ignore
                 :command (list "mosquitto_sub" "-h" "127.0.0.1"
                                "-p" (number-to-string meta-log-federation-test-broker-port)
                                "-t" "tp/from-emacs" "-C" "1" "-q" "1"))))
      (unwind-protect
          (progn
            ;; Emacs receives what the plain client publishes.
            (meta-log-federation-test-subscribe-and-wait "tp/from-cli" (car c))
            (should (zerop (call-process "mosquitto_pub" nil nil nil
                                         "-h" "127.0.0.1"
                                         "-p" (number-to-string meta-log-federation-test-broker-port)
                                         "-t" "tp/from-cli" "-m" "from the command line" "-q" "1")))
            (should (meta-log-federation-wait-until (lambda () (funcall (cdr c))) 5))
            (should (equal (funcall (cdr c)) '(("tp/from-cli" . "from the command line"))))
            ;; The plain client receives what Emacs publishes (it exits after one message).
            (should (meta-log-federation-wait-until
                     (lambda ()
                       (meta-log-federation-mqtt-publish "tp/from-emacs" "from Emacs" 1)
                       (or (not (process-live-p sub))
                           (progn (accept-process-output sub 0.1) nil)))
                     10))
            (should (equal (with-current-buffer sub-out (string-trim (buffer-string)))
                           "from Emacs")))
        (when (process-live-p sub) (delete-process sub))
        (kill-buffer sub-out)))))

(defun meta-log-federation-test--broken-handler (_topic _payload)
  "A handler that always fails."
  (error "Deliberate failure"))

(declare-function meta-log-federation--features "meta-log-federation-module")

;; What rustls says when it refuses a server's certificate: the issuer is
;; not trusted, or the certificate is for another name.  Anything else (a
;; refused connection, a timeout) is not the failure these tests look for.
(defconst meta-log-federation-test-untrusted-regexp
  "invalid peer certificate: UnknownIssuer"
  "Matches the connection error of a server certificate from an unknown CA.")

(defconst meta-log-federation-test-wrong-name-regexp
  "invalid peer certificate: \\(NotValidForName\\|certificate not valid for name\\)"
  "Matches the connection error of a certificate made for another host.")

(defun meta-log-federation-test-skip-unless-tls ()
  "Skip the current test when the module was built without TLS."
  (unless (memq 'tls (meta-log-federation--features))
    (ert-skip "the module was built without TLS (make NO_TLS=1); plain `make` builds it with TLS")))

(defun meta-log-federation-test-connection-error (url &rest options)
  "Connect to URL with OPTIONS; return the connection error it reports.
Fails the test if it connects instead, or reports nothing in 10 s."
  (let ((meta-log-federation-mqtt-last-error nil))
    (unwind-protect
        (progn
          (apply #'meta-log-federation-mqtt-connect url options)
          (should (meta-log-federation-wait-until
                   (lambda () meta-log-federation-mqtt-last-error) 10))
          (should-not (meta-log-federation-mqtt-connected-p))
          meta-log-federation-mqtt-last-error)
      (meta-log-federation-shutdown))))

(ert-deftest mqtt::tls-with-ca-file ()
  (meta-log-federation-test-skip-unless-tls)
  (let* ((broker (meta-log-federation-test-tls-broker-start))
         (url (format "mqtts://127.0.0.1:%d" (cdr broker)))
         (ca (expand-file-name "ca.crt" meta-log-federation-test-directory))
         (c (meta-log-federation-test-collector)))
    (unwind-protect
        (progn
          (meta-log-federation-mqtt-connect url :ca-file ca)
          (should (meta-log-federation-wait-until #'meta-log-federation-mqtt-connected-p 10))
          (meta-log-federation-test-subscribe-and-wait "tls/t" (car c) 1)
          (meta-log-federation-mqtt-publish "tls/t" "over TLS" 1)
          (should (meta-log-federation-wait-until (lambda () (funcall (cdr c))) 5))
          (should (equal (funcall (cdr c)) '(("tls/t" . "over TLS"))))
          (meta-log-federation-shutdown)
          ;; Without our CA the server is not trusted: the error is the
          ;; certificate's, from a server that is up and answering.
          (should (string-match-p meta-log-federation-test-untrusted-regexp
                                  (meta-log-federation-test-connection-error url))))
      (meta-log-federation-shutdown)
      (delete-process (car broker)))))

(ert-deftest mqtt::tls-certificate-for-another-name-is-refused ()
  (meta-log-federation-test-skip-unless-tls)
  ;; Signed by the CA we trust, but made for another host than 127.0.0.1.
  (meta-log-federation-test-make-certificates)
  (meta-log-federation-test-make-server-certificate
   "elsewhere" "elsewhere.example" "DNS:elsewhere.example")
  (let* ((broker (meta-log-federation-test-tls-broker-start "elsewhere"))
         (ca (expand-file-name "ca.crt" meta-log-federation-test-directory)))
    (unwind-protect
        (let ((err (meta-log-federation-test-connection-error
                    (format "mqtts://127.0.0.1:%d" (cdr broker)) :ca-file ca)))
          (should (string-match-p meta-log-federation-test-wrong-name-regexp err)))
      (delete-process (car broker)))))

(ert-deftest mqtt::tls-missing-from-the-build-says-how-to-get-it ()
  (when (memq 'tls (meta-log-federation--features))
    (ert-skip "the module has TLS; this checks the message of a build without it"))
  (let ((err (should-error (meta-log-federation-mqtt-connect "mqtts://127.0.0.1:8883"))))
    (should (string-match-p "rebuild it with `make`" (cadr err)))))

(ert-deftest mqtt::failing-handler-is-reported-and-others-run ()
  (meta-log-federation-test-with-connection ()
    (let ((c (meta-log-federation-test-collector))
          (errors-before meta-log-federation-handler-errors)
          (debug-on-error nil))
      (meta-log-federation-mqtt-subscribe "err/t" #'meta-log-federation-test--broken-handler)
      (meta-log-federation-test-subscribe-and-wait "err/t" (car c))
      (meta-log-federation-mqtt-publish "err/t" "one")
      (meta-log-federation-mqtt-publish "err/t" "two")
      (should (meta-log-federation-wait-until
               (lambda () (= 2 (length (funcall (cdr c))))) 5))
      (should (= 2 (- meta-log-federation-handler-errors errors-before)))
      (should (string-match-p "meta-log-federation-test--broken-handler"
                              meta-log-federation-last-handler-error))
      (should (string-match-p "Deliberate failure" meta-log-federation-last-handler-error)))))

(ert-deftest mqtt::hooks-run-on-connect-and-disconnect ()
  (let* ((log nil)
         (meta-log-federation-mqtt-connected-hook (list (lambda () (push 'up log))))
         (meta-log-federation-mqtt-disconnected-hook
          (list (lambda (reason) (push (cons 'down reason) log)))))
    (meta-log-federation-test-connect)
    (should (meta-log-federation-wait-until (lambda () (memq 'up log)) 5))
    (should (meta-log-federation-mqtt-disconnect))
    (should (meta-log-federation-wait-until (lambda () (assq 'down log)) 5))
    (should (string-match-p "by request" (cdr (assq 'down log))))
    (should-not (meta-log-federation-mqtt-connected-p))
    (should-not (meta-log-federation-mqtt-disconnect))
    (meta-log-federation-test-cleanup)))

(ert-deftest mqtt::queue-full-signals-instead-of-dropping ()
  ;; Nothing listens on this port: messages wait in the queue.
  (let ((port (meta-log-federation-test-free-port)))
    (unwind-protect
        (progn
          (meta-log-federation-mqtt-connect (format "mqtt://127.0.0.1:%d" port)
                                            :queue-limit 5)
          (dotimes (i 5)
            (meta-log-federation-mqtt-publish "q/full" (number-to-string i) 1))
          (let ((err (should-error (meta-log-federation-mqtt-publish "q/full" "6" 1)
                                   :type 'meta-log-federation-queue-full)))
            (should (string-match-p "queue limit" (cadr err))))
          (should (= 5 (plist-get (meta-log-federation-stats) :pending))))
      (meta-log-federation-test-cleanup))))

(ert-deftest mqtt::broker-restart-reconnects-resubscribes-and-delivers-queued ()
  (let* ((downs nil) (ups 0)
         (meta-log-federation-mqtt-connected-hook (list (lambda () (setq ups (1+ ups)))))
         (meta-log-federation-mqtt-disconnected-hook (list (lambda (r) (push r downs))))
         (c (meta-log-federation-test-collector)))
    (meta-log-federation-test-with-connection (:max-reconnect-delay 0.5)
      (meta-log-federation-test-subscribe-and-wait "rs/t" (car c) 1)
      (meta-log-federation-mqtt-publish "rs/t" "before" 1)
      (should (meta-log-federation-wait-until (lambda () (funcall (cdr c))) 5))
      (meta-log-federation-test-broker-kill)
      (should (meta-log-federation-wait-until (lambda () downs) 10))
      (should-not (meta-log-federation-mqtt-connected-p))
      ;; Published while the broker is gone: queued, none lost.
      (dotimes (i 50)
        (meta-log-federation-mqtt-publish "rs/t" (format "queued-%d" i) 1))
      (should (= 50 (plist-get (meta-log-federation-stats) :pending)))
      (meta-log-federation-test-broker-start meta-log-federation-test-broker-port)
      (should (meta-log-federation-wait-until #'meta-log-federation-mqtt-connected-p 15))
      (should (meta-log-federation-wait-until
               (lambda () (= 51 (length (funcall (cdr c))))) 10))
      (should (equal (mapcar #'cdr (funcall (cdr c)))
                     (cons "before" (mapcar (lambda (i) (format "queued-%d" i))
                                            (number-sequence 0 49)))))
      (should (>= ups 2))
      ;; Live traffic after the reconnect works too.
      (meta-log-federation-mqtt-publish "rs/t" "after" 1)
      (should (meta-log-federation-wait-until
               (lambda () (= 52 (length (funcall (cdr c))))) 5)))))

(ert-deftest mqtt::last-will-published-when-a-peer-dies ()
  (meta-log-federation-test-with-connection ()
    (let* ((c (meta-log-federation-test-collector))
           (url (meta-log-federation-test-broker-url))
           (peer (make-process
                  :name "dying-peer" :buffer (generate-new-buffer " *dying-peer*") :noquery t
                  :command (meta-log-federation-test-emacs-command
                            '(require 'meta-log-federation)
                            `(meta-log-federation-mqtt-connect
                              ,url :keep-alive 1 :will-topic "will/peer"
                              :will-payload "peer vanished" :will-retain nil)
                            '(meta-log-federation-wait-until #'meta-log-federation-mqtt-connected-p 10)
                            '(meta-log-federation-mqtt-publish "will/ready" "ready" 1)
                            '(sleep-for 60)))))
      (meta-log-federation-mqtt-subscribe "will/peer" (car c) 1)
      (meta-log-federation-test-subscribe-and-wait "will/ready" (car c) 1)
      (should (meta-log-federation-wait-until
               (lambda () (assoc "will/ready" (funcall (cdr c)))) 20))
      (signal-process peer 'SIGKILL)
      (should (meta-log-federation-wait-until
               (lambda () (assoc "will/peer" (funcall (cdr c)))) 10))
      (should (equal (cdr (assoc "will/peer" (funcall (cdr c)))) "peer vanished")))))

(ert-deftest runtime::kill-emacs-exits-cleanly-without-will ()
  (meta-log-federation-test-with-connection ()
    (let* ((c (meta-log-federation-test-collector))
           (url (meta-log-federation-test-broker-url))
           (out (generate-new-buffer " *exiting-peer*"))
           (child nil))
      ;; Subscribed before the child starts: a will would reach us.
      (meta-log-federation-mqtt-subscribe "will/clean" (car c) 1)
      (meta-log-federation-test-subscribe-and-wait "will/bye" (car c) 1)
      (setq child (make-process
                   :name "exiting-peer" :buffer out :noquery t :sentinel #'ignore
                   :command (meta-log-federation-test-emacs-command
                             '(require 'meta-log-federation)
                             `(meta-log-federation-mqtt-connect
                               ,url :keep-alive 1 :will-topic "will/clean"
                               :will-payload "should not appear")
                             '(meta-log-federation-wait-until
                               #'meta-log-federation-mqtt-connected-p 10)
                             '(meta-log-federation-mqtt-publish "will/bye" "bye" 1)
                             '(kill-emacs 0))))
      (unwind-protect
          (progn
            ;; The child's last publish arrives, and it exits by itself, cleanly.
            (should (meta-log-federation-wait-until
                     (lambda () (assoc "will/bye" (funcall (cdr c)))) 20))
            (should (equal (cdr (assoc "will/bye" (funcall (cdr c)))) "bye"))
            (should (meta-log-federation-wait-until
                     (lambda () (not (process-live-p child))) 15))
            (should (eq (process-status child) 'exit))
            (should (eq (process-exit-status child) 0))
            ;; The broker saw its connection close before we saw the exit;
            ;; a will would be sent then.  A marker published on the same
            ;; topic now must arrive after it: once the marker is here, no
            ;; will came before it.
            (meta-log-federation-mqtt-publish "will/clean" "marker" 1)
            (should (meta-log-federation-wait-until
                     (lambda () (assoc "will/clean" (funcall (cdr c)))) 5))
            (should (equal (mapcar #'cdr (cl-remove "will/clean" (funcall (cdr c))
                                                    :key #'car :test-not #'equal))
                           '("marker"))))
        (when (process-live-p child) (delete-process child))
        (kill-buffer out)))))

(ert-deftest runtime::no-leaked-threads-or-descriptors-after-100-cycles ()
  (meta-log-federation-test-ensure-broker)
  (meta-log-federation-shutdown)
  ;; One cycle first, so that one-time allocations (the wake-up pipe) are counted in the base.
  (meta-log-federation-test-connect)
  (meta-log-federation-shutdown)
  (let ((before (meta-log-federation--resource-counts))
        (connects 0))
    (dotimes (_ 100)
      (meta-log-federation-mqtt-connect (meta-log-federation-test-broker-url))
      (when (meta-log-federation-wait-until #'meta-log-federation-mqtt-connected-p 5)
        (setq connects (1+ connects)))
      (meta-log-federation-mqtt-disconnect))
    (meta-log-federation-shutdown)
    (should (= connects 100))
    (let ((after (meta-log-federation--resource-counts)))
      (should (equal after before)))))

(ert-deftest runtime::shutdown-is-idempotent ()
  (meta-log-federation-test-connect)
  (should (meta-log-federation-shutdown))
  (should-not (meta-log-federation-shutdown))
  (should-not (meta-log-federation-mqtt-connected-p))
  (should-not (meta-log-federation--mqtt-active-p)))

(provide 'meta-log-federation-mqtt-test)
;;; meta-log-federation-mqtt-test.el ends here
