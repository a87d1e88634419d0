;;; meta-log-federation-direct-test.el --- Direct peer links over TCP, with a real broker and peers  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; This Emacs and a batch Emacs peer, on a private mosquitto, open a
;; direct link over the TCP fallback on loopback (TLS 1.3 with
;; per-session certificates, signalled through the broker).  A plain
;; `mosquitto_sub' on the recipient's messages topic shows what still
;; passes through the broker.  The signalling checks (untrusted peer,
;; rate limit, glare, a hello naming another certificate) are tested in
;; Rust (src/links/tests.rs, src/links/hello.rs, src/links/tcp.rs).

;;; Code:

(require 'meta-log-federation-delivery-test)
(require 'meta-log-federation-direct)

(defun direct-test--require-links ()
  "Skip the test when this build of the module has no direct links."
  (unless (meta-log-federation-direct-available-p)
    (ert-skip "this build of the module has no direct links (build with FEATURES=tls)")))

(defun direct-test--spy (topic)
  "Start `mosquitto_sub' on TOPIC of the test broker; return its process.
Waits until it receives a probe published on TOPIC, so that it is
subscribed before the test goes on."
  (let* ((program (or (executable-find "mosquitto_sub")
                      (ert-skip "mosquitto_sub is missing (apt-get install mosquitto-clients)")))
         (proc (make-process
                :name "direct-spy" :buffer (generate-new-buffer " *direct-spy*") :noquery t
                :command (list program "-h" "127.0.0.1"
                               "-p" (number-to-string meta-log-federation-test-broker-port)
                               "-q" "1" "-t" topic))))
    (push proc meta-log-federation-test-peers)
    (should (meta-log-federation-wait-until
             (lambda ()
               (meta-log-federation-mqtt-publish topic "probe" 1)
               (with-current-buffer (process-buffer proc)
                 (string-search "probe" (buffer-string))))
             20))
    proc))

(defun direct-test--spied-messages (spy)
  "Return how many peer messages (kind 4770) SPY saw."
  (with-current-buffer (process-buffer spy)
    (save-excursion
      (goto-char (point-min))
      (cl-loop while (search-forward "\"kind\":4770" nil t) count t))))

(defun direct-test--link (peer-id)
  "Return this Emacs' link plist to PEER-ID, or nil."
  (cl-find peer-id (meta-log-federation-peer-links)
           :key (lambda (l) (plist-get l :peer-id)) :test #'equal))

(defun direct-test--received (peer text)
  "Return how many times PEER reported the message TEXT."
  (delivery-test--count-lines peer (concat "MSG [0-9a-f]+ " (regexp-quote text) "$")))

(ert-deftest direct::a-tcp-link-carries-messages-and-the-broker-takes-over-when-it-drops ()
  "Two peers link over TCP on loopback; 100 messages skip the broker.
Then the link is closed in the middle of 100 more: the rest go through
the broker, and every message arrives exactly once."
  (direct-test--require-links)
  (delivery-test--with-broker (conf "direct")
    (ignore conf)
    (let ((meta-log-federation-tcp-listen "127.0.0.1:0")
          (meta-log-federation-webrtc nil)
          (ups nil) (downs nil) (delivered nil))
      (let ((meta-log-federation-link-up-functions
             (list (lambda (peer path) (push (cons peer path) ups))))
            (meta-log-federation-link-down-functions
             (list (lambda (peer reason) (push (cons peer reason) downs))))
            (meta-log-federation-peer-message-delivered-functions
             (list (lambda (id _peer) (push id delivered)))))
        (delivery-test--as-peer
          (let* ((bob (delivery-test--start-peer
                       "bob" nil nil '(meta-log-federation-tcp-listen "127.0.0.1:0"
                                       meta-log-federation-webrtc nil)))
                 (bob-id (process-get bob 'peer-id))
                 (spy (direct-test--spy (format "canvasl/peers/%s/messages" bob-id)))
                 (ids nil))
            (should (meta-log-federation-wait-until
                     (lambda () (eq (meta-log-federation-test-status bob-id) 'online)) 20))
            ;; Returns at once; the link comes up in the background.
            (meta-log-federation-connect-to-peer bob-id)
            (should (meta-log-federation-wait-until
                     (lambda () (eq (plist-get (direct-test--link bob-id) :state) 'up)) 20))
            (should (eq (plist-get (direct-test--link bob-id) :path) 'tcp))
            (should (meta-log-federation-wait-until (lambda () (assoc bob-id ups)) 5))
            (should (equal (assoc bob-id ups) (cons bob-id 'tcp)))
            (dotimes (i 100)
              (push (meta-log-federation-send-peer-message bob-id (format "direct-%03d" i)) ids))
            (should (meta-log-federation-wait-until
                     (lambda () (cl-every (lambda (id) (member id delivered)) ids)) 30))
            (dotimes (i 100)
              (should (= 1 (direct-test--received bob (format "direct-%03d" i)))))
            (should (= 0 (direct-test--spied-messages spy)))
            (let ((link (direct-test--link bob-id)))
              (should (> (plist-get link :bytes-out) 0))
              (should (> (plist-get link :bytes-in) 0)))
            ;; The link drops in the middle of a stream.
            (dotimes (i 100)
              (when (= i 40)
                (meta-log-federation-disconnect-peer bob-id))
              (push (meta-log-federation-send-peer-message bob-id (format "after-%03d" i)) ids))
            (should (meta-log-federation-wait-until
                     (lambda () (cl-every (lambda (id) (member id delivered)) ids)) 60))
            (should (meta-log-federation-wait-until
                     (lambda () (= 1 (direct-test--received bob "after-099"))) 20))
            (dotimes (i 100)
              (should (= 1 (direct-test--received bob (format "after-%03d" i)))))
            (should (meta-log-federation-wait-until (lambda () (assoc bob-id downs)) 5))
            (should (>= (direct-test--spied-messages spy) 60))
            (should-not (eq (plist-get (direct-test--link bob-id) :state) 'up))))))))

(defconst direct-test--nft-table "mlf_direct_test"
  "The nftables table the impostor test adds (and deletes).")

(defun direct-test--nft (&rest args)
  "Run nft with ARGS; return non-nil on success."
  (zerop (apply #'call-process "nft" nil nil nil args)))

(defun direct-test--redirect (from to)
  "Redirect TCP connections to 127.0.0.1:FROM made here to port TO.
Skip the test when nftables cannot be used (not root, no nft)."
  (unless (and (executable-find "nft") (zerop (user-uid)))
    (ert-skip "needs root and nft to redirect a connection to an impostor"))
  (direct-test--nft "delete" "table" "ip" direct-test--nft-table)
  (unless (and (direct-test--nft "add" "table" "ip" direct-test--nft-table)
               (direct-test--nft "add" "chain" "ip" direct-test--nft-table "out"
                                 "{ type nat hook output priority -100 ; }")
               (direct-test--nft "add" "rule" "ip" direct-test--nft-table "out"
                                 "ip" "daddr" "127.0.0.1" "tcp" "dport" (number-to-string from)
                                 "redirect" "to" (format ":%d" to)))
    (direct-test--nft "delete" "table" "ip" direct-test--nft-table)
    (ert-skip "nftables refused the redirect rule (no nat support in this kernel?)")))

(defun direct-test--impostor (port)
  "Start a TLS 1.3 server with a certificate of its own on PORT; return it.
It asks for a client certificate, as a link's listener does."
  (unless (executable-find "openssl")
    (ert-skip "openssl is missing (it plays the impostor)"))
  (let ((default-directory meta-log-federation-test-directory))
    (meta-log-federation-test-openssl
     "req" "-x509" "-newkey" "ec" "-pkeyopt" "ec_paramgen_curve:P-256" "-nodes" "-days" "1"
     "-subj" "/CN=impostor" "-keyout" "impostor.key" "-out" "impostor.crt")
    (let ((proc (make-process
                 :name "direct-impostor" :buffer (generate-new-buffer " *direct-impostor*")
                 :noquery t
                 :command (list "openssl" "s_server" "-accept" (format "127.0.0.1:%d" port)
                                "-cert" "impostor.crt" "-key" "impostor.key"
                                "-tls1_3" "-verify" "1" "-alpn" "mlf-link/1"))))
      (push proc meta-log-federation-test-peers)
      (should (meta-log-federation-wait-until
               (lambda () (meta-log-federation-test-port-open-p port)) 10))
      proc)))

(ert-deftest direct::a-connection-to-a-certificate-the-peer-did-not-sign-for-never-carries-a-message ()
  "The TCP connection to Bob is redirected to an impostor with another certificate.
The link never comes up, the refusal is counted, and messages go through the broker."
  (direct-test--require-links)
  (delivery-test--with-broker (conf "direct-impostor")
    (ignore conf)
    (let* ((bob-port (meta-log-federation-test-free-port))
           (impostor-port (meta-log-federation-test-free-port))
           (meta-log-federation-tcp-listen nil)
           (meta-log-federation-webrtc nil)
           (meta-log-federation-link-setup-timeout 5)
           (downs nil) (delivered nil)
           (meta-log-federation-link-down-functions
            (list (lambda (peer reason) (push (cons peer reason) downs))))
           (meta-log-federation-peer-message-delivered-functions
            (list (lambda (id _peer) (push id delivered)))))
      (unwind-protect
          (progn
            (direct-test--redirect bob-port impostor-port)
            (direct-test--impostor impostor-port)
            (delivery-test--as-peer
              (let* ((bob (delivery-test--start-peer
                           "bob" nil nil
                           `(meta-log-federation-tcp-listen ,(format "127.0.0.1:%d" bob-port)
                             meta-log-federation-webrtc nil)))
                     (bob-id (process-get bob 'peer-id))
                     (spy (direct-test--spy (format "canvasl/peers/%s/messages" bob-id)))
                     (ids nil))
                (should (meta-log-federation-wait-until
                         (lambda () (eq (meta-log-federation-test-status bob-id) 'online)) 20))
                (meta-log-federation-connect-to-peer bob-id)
                (should (meta-log-federation-wait-until
                         (lambda () (> (alist-get 'bad-fingerprint
                                                  (meta-log-federation-direct-counters))
                                       0))
                         20))
                (should (meta-log-federation-wait-until (lambda () (assoc bob-id downs)) 10))
                (should-not (eq (plist-get (direct-test--link bob-id) :state) 'up))
                (dotimes (i 5)
                  (push (meta-log-federation-send-peer-message bob-id (format "safe-%d" i)) ids))
                (should (meta-log-federation-wait-until
                         (lambda () (cl-every (lambda (id) (member id delivered)) ids)) 20))
                (should (= 5 (direct-test--spied-messages spy)))
                (should (= 0 (alist-get 'carried (meta-log-federation-direct-counters)))))))
        (direct-test--nft "delete" "table" "ip" direct-test--nft-table)))))

(ert-deftest direct::without-a-listener-on-either-side-the-broker-carries-everything ()
  "Neither peer listens for TCP: the link fails, said by the hook, and messages still arrive."
  (direct-test--require-links)
  (delivery-test--with-broker (conf "direct-none")
    (ignore conf)
    (let ((meta-log-federation-tcp-listen nil)
          (meta-log-federation-webrtc nil)
          (meta-log-federation-link-setup-timeout 5)
          (downs nil) (delivered nil))
      (let ((meta-log-federation-link-down-functions
             (list (lambda (peer reason) (push (cons peer reason) downs))))
            (meta-log-federation-peer-message-delivered-functions
             (list (lambda (id _peer) (push id delivered)))))
        (delivery-test--as-peer
          (let* ((bob (delivery-test--start-peer
                       "bob" nil nil '(meta-log-federation-webrtc nil)))
                 (bob-id (process-get bob 'peer-id)))
            (should (meta-log-federation-wait-until
                     (lambda () (eq (meta-log-federation-test-status bob-id) 'online)) 20))
            (meta-log-federation-connect-to-peer bob-id)
            (should (meta-log-federation-wait-until (lambda () (assoc bob-id downs)) 20))
            (should (string-search "neither peer accepts TCP" (cdr (assoc bob-id downs))))
            (should (eq (plist-get (direct-test--link bob-id) :state) 'failed))
            (let ((id (meta-log-federation-send-peer-message bob-id "via-broker")))
              (should (meta-log-federation-wait-until (lambda () (member id delivered)) 20)))
            (should (= 1 (direct-test--received bob "via-broker")))))))))

(ert-deftest direct::with-direct-links-t-peers-link-by-themselves ()
  "Both peers set `meta-log-federation-direct-links' to t: a link comes up unasked."
  (direct-test--require-links)
  (delivery-test--with-broker (conf "direct-auto")
    (ignore conf)
    (let ((meta-log-federation-tcp-listen "127.0.0.1:0")
          (meta-log-federation-webrtc nil)
          (meta-log-federation-direct-links t))
      (delivery-test--as-peer
        (let* ((bob (delivery-test--start-peer
                     "bob" nil nil '(meta-log-federation-tcp-listen "127.0.0.1:0"
                                     meta-log-federation-webrtc nil
                                     meta-log-federation-direct-links t)))
               (bob-id (process-get bob 'peer-id)))
          (should (meta-log-federation-wait-until
                   (lambda () (eq (plist-get (direct-test--link bob-id) :state) 'up)) 40))
          (should (eq (plist-get (direct-test--link bob-id) :path) 'tcp)))))))

(ert-deftest direct::rest-credentials-follow-coturns-formula ()
  "coturn's REST credentials: user EXPIRY:USER, password base64(HMAC-SHA1)."
  (direct-test--require-links)
  (pcase-let ((`(,user ,password) (meta-log-federation-direct-rest-credentials "north" "alice" 60)))
    (should (string-match "\\`\\([0-9]+\\):alice\\'" user))
    (should (<= (abs (- (string-to-number (match-string 1 user)) (+ (float-time) 60))) 5))
    (should (equal password (direct-test--openssl-hmac-sha1 "north" user)))))

(defun direct-test--openssl-hmac-sha1 (key text)
  "Return base64(HMAC-SHA1(KEY, TEXT)) as openssl computes it."
  (unless (executable-find "openssl")
    (ert-skip "openssl is missing (it computes the reference HMAC)"))
  (with-temp-buffer
    (insert text)
    (set-buffer-multibyte nil)
    (call-process-region (point-min) (point-max) "openssl" t t nil
                         "dgst" "-sha1" "-hmac" key "-binary")
    (base64-encode-string (buffer-string) t)))

(provide 'meta-log-federation-direct-test)
;;; meta-log-federation-direct-test.el ends here

(ert-deftest direct::a-webrtc-link-between-two-emacs-carries-messages ()
  "Two Emacs link by a WebRTC data channel on loopback (host candidates).
While it is up, a `mosquitto_sub' on Bob's message topic sees none of
20 messages, and each arrives once."
  (direct-test--require-links)
  (unless (memq 'webrtc (meta-log-federation--features))
    (ert-skip "this module was built without WebRTC (cargo feature `webrtc')"))
  (delivery-test--with-broker (conf "direct-webrtc")
    (ignore conf)
    (let ((meta-log-federation-tcp-listen nil)
          (meta-log-federation-webrtc t)
          (ups nil) (delivered nil))
      (let ((meta-log-federation-link-up-functions
             (list (lambda (peer path) (push (cons peer path) ups))))
            (meta-log-federation-peer-message-delivered-functions
             (list (lambda (id _peer) (push id delivered)))))
        (delivery-test--as-peer
          (let* ((bob (delivery-test--start-peer
                       "bob" nil nil '(meta-log-federation-webrtc t)))
                 (bob-id (process-get bob 'peer-id))
                 (spy (direct-test--spy (format "canvasl/peers/%s/messages" bob-id)))
                 (ids nil))
            (should (meta-log-federation-wait-until
                     (lambda () (eq (meta-log-federation-test-status bob-id) 'online)) 20))
            (meta-log-federation-connect-to-peer bob-id)
            (should (meta-log-federation-wait-until (lambda () (assoc bob-id ups)) 40))
            (should (eq (cdr (assoc bob-id ups)) 'host))
            (should (eq (plist-get (direct-test--link bob-id) :path) 'host))
            (dotimes (i 20)
              (push (meta-log-federation-send-peer-message bob-id (format "rtc-%d" i)) ids))
            (should (meta-log-federation-wait-until
                     (lambda () (cl-every (lambda (id) (member id delivered)) ids)) 40))
            (dotimes (i 20)
              (should (= 1 (direct-test--received bob (format "rtc-%d" i)))))
            (should (= 0 (direct-test--spied-messages spy)))))))))

(ert-deftest direct::a-malformed-tcp-advertise-says-what-to-write ()
  "`meta-log-federation-tcp-advertise' that is not an IP HOST:PORT is refused by name.
Checked before anything starts, so federation need not run."
  (direct-test--require-links)
  (let ((err (should-error (meta-log-federation--links-start
                            '(:tcp-listen "127.0.0.1:0" :tcp-advertise "my-router:7448")))))
    (should (string-search "meta-log-federation-tcp-advertise" (error-message-string err)))
    (should (string-search "HOST:PORT" (error-message-string err)))))
