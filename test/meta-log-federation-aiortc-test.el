;;; meta-log-federation-aiortc-test.el --- An aiortc peer links to Emacs through the documented signalling  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Interop with an independent implementation of direct links.  This
;; batch Emacs, running the package on a private mosquitto, links with
;; tests/interop/federation_peer.py: a Python peer (aiortc for WebRTC,
;; coincurve and cryptography for the keys, signatures and NIP-44)
;; written from docs/PROTOCOL.md alone.  It announces itself with signed
;; presence, signals with encrypted kind 4774 events, sends and checks
;; the hello, and exchanges signed peer messages and receipts over the
;; data channel.  A `mosquitto_sub' on both messages topics shows that
;; none of them passes through the broker.
;;
;; The Python peer's key is picked smaller or larger than this Emacs'
;; peer id, so the glare rule makes it the offerer in one test and the
;; answerer in the other; either side may ask for the link.  Two tests
;; use the TCP fallback instead of WebRTC (the Python peer dials with
;; TLS 1.3 from Python's ssl).  Without python3, aiortc, coincurve or
;; paho-mqtt the tests are skipped, saying what to install.

;;; Code:

(require 'meta-log-federation-direct-test)

(defconst aiortc-test--script
  (expand-file-name "../tests/interop/federation_peer.py"
                    (file-name-directory (or load-file-name buffer-file-name)))
  "The Python peer.")

(defun aiortc-test--require ()
  "Skip the test unless links, WebRTC and the Python peer's modules are here."
  (direct-test--require-links)
  (unless (memq 'webrtc (meta-log-federation--features))
    (ert-skip "this module was built without WebRTC (cargo feature `webrtc')"))
  (unless (and (executable-find "python3")
               (zerop (call-process "python3" nil nil nil "-c"
                                    "import aiortc, coincurve, cryptography, paho.mqtt")))
    (ert-skip "python3 with aiortc, coincurve and paho-mqtt is missing (pip install aiortc coincurve paho-mqtt)")))

(defun aiortc-test--start (me order &rest options)
  "Start the Python peer for the Emacs peer ME with ORDER; return its process.
ORDER is \"smaller\" or \"larger\": how its peer id compares to ME.
OPTIONS are further command line arguments.  Its key is made before it
connects, so the process property `peer-id' is set when this returns."
  (let* ((buffer (generate-new-buffer " *aiortc-peer*"))
         (proc (make-process
                :name "aiortc-peer" :buffer buffer :noquery t :connection-type 'pipe
                :stderr (get-buffer-create " *aiortc-peer-stderr*")
                :command (append (list "python3" "-B" aiortc-test--script
                                       "--broker" (format "127.0.0.1:%d"
                                                          meta-log-federation-test-broker-port)
                                       "--emacs" me "--order" order)
                                 options))))
    (push proc meta-log-federation-test-peers)
    (let ((id (meta-log-federation-wait-until
               (lambda () (aiortc-test--line proc "PEER \\([0-9a-f]\\{64\\}\\)")) 30)))
      (unless id
        (error "The Python peer did not start: %s%s" (with-current-buffer buffer (buffer-string))
               (with-current-buffer " *aiortc-peer-stderr*" (buffer-string))))
      (process-put proc 'peer-id id))
    proc))

(defmacro aiortc-test--in-lines (proc &rest body)
  "Run BODY in PROC's output, narrowed to its complete lines.
A line still being written (output arrives in chunks) is left out, so
\"SENT 2\" is never read from a half-arrived \"SENT 20\"."
  (declare (indent 1) (debug t))
  `(with-current-buffer (process-buffer ,proc)
     (save-excursion
       (save-restriction
         (goto-char (point-max))
         (narrow-to-region (point-min) (if (search-backward "\n" nil t) (1+ (point)) (point-min)))
         ,@body))))

(defun aiortc-test--line (proc regexp)
  "Return group 1 (or the whole match) of the last line of PROC matching REGEXP."
  (aiortc-test--in-lines proc
    (goto-char (point-max))
    (when (re-search-backward (concat "^" regexp) nil t)
      (or (match-string 1) (match-string 0)))))

(defun aiortc-test--count (proc regexp)
  "Return how many lines of PROC match REGEXP."
  (aiortc-test--in-lines proc
    (goto-char (point-min))
    (cl-loop while (re-search-forward (concat "^" regexp) nil t) count t)))

(defun aiortc-test--quit (proc)
  "Tell PROC to close its link and report; return its report as an alist."
  (process-send-string proc "quit\n")
  (let ((done (meta-log-federation-wait-until
               (lambda () (aiortc-test--line proc "DONE \\({.*}\\)$")) 20)))
    (should done)
    (json-parse-string done :object-type 'alist)))

(defun aiortc-test--spied (spy kind)
  "Return how many events of KIND the `mosquitto_sub' SPY saw."
  (with-current-buffer (process-buffer spy)
    (save-excursion
      (goto-char (point-min))
      (cl-loop while (search-forward (format "\"kind\":%d" kind) nil t) count t))))

(defvar aiortc-test--transport 'webrtc
  "How the links of `aiortc-test--with-emacs-peer' go: `webrtc' or `tcp'.
With `tcp' this Emacs has no WebRTC and listens for TCP links on loopback.")

(defmacro aiortc-test--with-emacs-peer (&rest body)
  "Run BODY with this Emacs as a peer on a private broker.
Its links go as `aiortc-test--transport' says.  The trust policy is
`allowlist': the Python peer is accepted only once trusted with
`meta-log-federation-trust-peer', the documented way."
  (declare (indent 0) (debug t))
  `(delivery-test--with-broker (conf "aiortc")
     (ignore conf)
     (let ((meta-log-federation-tcp-listen (and (eq aiortc-test--transport 'tcp) "127.0.0.1:0"))
           (meta-log-federation-webrtc (eq aiortc-test--transport 'webrtc))
           (meta-log-federation-trust-policy 'allowlist))
       (delivery-test--as-peer ,@body))))

(defun aiortc-test--link-and-exchange (order initiator &optional foreign tcp)
  "Link with a Python peer whose id is ORDER than ours; exchange messages.
Each side sends 20 over the link.
INITIATOR is `emacs' (`meta-log-federation-connect-to-peer') or
`python' (it offers, or sends `request', as soon as it is online).
With FOREIGN, the Python peer first sends two events the link must not
carry (signed by another key; for another topic).  With TCP, neither
side uses WebRTC: the link is the TCP fallback, Emacs listening."
  (aiortc-test--require)
  (let ((aiortc-test--transport (if tcp 'tcp 'webrtc))
        (path (if tcp 'tcp 'host)))
    (aiortc-test--with-emacs-peer
      (aiortc-test--exchange order initiator foreign path))))

(defun aiortc-test--exchange (order initiator foreign path)
  "The body of `aiortc-test--link-and-exchange' (same ORDER, INITIATOR, FOREIGN).
PATH is the link's expected path."
  (let* ((me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
         (python (apply #'aiortc-test--start me order
                        (append (and (eq initiator 'python) '("--initiate"))
                                (and foreign '("--foreign"))
                                (and (eq path 'tcp) '("--transport" "tcp")))))
         (py-id (process-get python 'peer-id))
         (ups nil) (delivered nil) (received nil) (offline nil)
         (meta-log-federation-peer-offline-functions
          (list (lambda (peer reason) (push (cons peer reason) offline))))
         (meta-log-federation-link-up-functions
          (list (lambda (peer path) (push (cons peer path) ups))))
         (meta-log-federation-peer-message-delivered-functions
          (list (lambda (id _peer) (push id delivered))))
         (meta-log-federation-peer-message-functions
          (list (lambda (from text) (push (cons from text) received))))
         (spy-mine (direct-test--spy (format "canvasl/peers/%s/messages" me)))
         (spy-theirs (direct-test--spy (format "canvasl/peers/%s/messages" py-id)))
         (ids nil))
    (should (equal (string< py-id me) (equal order "smaller")))
    (meta-log-federation-trust-peer py-id)
    (process-send-string python "go\n")
    (should (meta-log-federation-wait-until
             (lambda () (eq (meta-log-federation-test-status py-id) 'online)) 20))
    (when (eq initiator 'emacs)
      (meta-log-federation-connect-to-peer py-id))
    (should (meta-log-federation-wait-until (lambda () (assoc py-id ups)) 40))
    (should (eq (cdr (assoc py-id ups)) path))
    ;; Emacs' hello passed every check of the Python side.
    (should (meta-log-federation-wait-until
             (lambda () (aiortc-test--line python "HELLO-OK \\([0-9a-f]+\\)")) 10))
    ;; The Python peer's 20 messages arrive as verified peer messages, once each.
    (should (meta-log-federation-wait-until
             (lambda () (= 20 (cl-count py-id received :key #'car :test #'equal))) 30))
    (dotimes (i 20)
      (should (= 1 (cl-count (cons py-id (format "from-python-%d" i)) received
                             :test #'equal))))
    (if foreign
        ;; Both came before the 20 on the ordered channel: dropped, counted, link kept.
        (progn
          (should (= 2 (alist-get 'link-foreign (meta-log-federation-direct-counters))))
          (should-not (cl-find-if (lambda (m) (string-prefix-p "foreign-" (cdr m)))
                                  received)))
      (should (= 0 (alist-get 'link-foreign (meta-log-federation-direct-counters)))))
    (should (= 20 (length received)))
    ;; Ours reach it over the link, and its receipts come back.
    (dotimes (i 20)
      (push (meta-log-federation-send-peer-message py-id (format "from-emacs-%d" i)) ids))
    (should (meta-log-federation-wait-until
             (lambda () (cl-every (lambda (id) (member id delivered)) ids)) 30))
    (should (meta-log-federation-wait-until
             (lambda () (= 20 (aiortc-test--count python "GOT from-emacs-"))) 10))
    (dotimes (i 20)
      (should (= 1 (aiortc-test--count python (format "GOT from-emacs-%d$" i)))))
    ;; Our receipts for its 20 messages reached it over the link too.
    (should (meta-log-federation-wait-until
             (lambda () (aiortc-test--line python "ACKED 20$")) 10))
    (let ((link (direct-test--link py-id)))
      (should (eq (plist-get link :state) 'up))
      (should (eq (plist-get link :path) path))
      (should (> (plist-get link :bytes-in) 0))
      (should (> (plist-get link :bytes-out) 0)))
    ;; Sent over the link: our 20 messages and at least one receipt;
    ;; received: its 20 messages and its 20 receipts.
    (let ((counters (meta-log-federation-direct-counters)))
      (should (>= (alist-get 'carried counters) 21))
      (should (>= (alist-get 'received counters) 40)))
    ;; The broker saw the signalling, but no peer message and no receipt.
    (should (> (aiortc-test--spied spy-mine 4774) 0))
    (dolist (spy (list spy-mine spy-theirs))
      (should (= 0 (aiortc-test--spied spy 4770)))
      (should (= 0 (aiortc-test--spied spy 4773))))
    ;; Emacs pings every 5 s: the Python peer's pongs give the link a round trip.
    (should (meta-log-federation-wait-until
             (lambda () (numberp (plist-get (direct-test--link py-id) :rtt-ms))) 15))
    (let ((report (aiortc-test--quit python)))
      (message "aiortc peer's report: %S" report)
      (should (equal (alist-get 'role report)
                     (if (equal order "smaller") "offerer" "answerer")))
      (should (= 0 (alist-get 'bad (alist-get 'hellos report))))
      (should (= 20 (alist-get 'acked report)))
      (should (= 20 (alist-get 'got report)))
      (should (= 0 (alist-get 'via_broker report)))
      (should (equal [] (alist-get 'refused report))))
    ;; Its departure (not a will) tells Emacs it left.
    (should (meta-log-federation-wait-until (lambda () (assoc py-id offline)) 10))
    (should (eq (cdr (assoc py-id offline)) 'departed))))

(ert-deftest aiortc::a-python-offerer-links-by-the-documented-signalling ()
  "The Python peer has the smaller id: Emacs asks (`request'), Python offers."
  (aiortc-test--link-and-exchange "smaller" 'emacs))

(ert-deftest aiortc::a-python-answerer-links-by-the-documented-signalling ()
  "The Python peer has the larger id: Emacs offers, Python answers."
  (aiortc-test--link-and-exchange "larger" 'emacs))

(ert-deftest aiortc::a-python-peer-offers-unasked-and-emacs-answers ()
  "The Python peer has the smaller id and offers on its own; Emacs answers."
  (aiortc-test--link-and-exchange "smaller" 'python))

(ert-deftest aiortc::a-python-request-makes-emacs-offer ()
  "The Python peer has the larger id and sends `request'; Emacs offers."
  (aiortc-test--link-and-exchange "larger" 'python))

(ert-deftest aiortc::a-python-peer-without-webrtc-offers-the-tcp-fallback ()
  "Without WebRTC, the Python peer (the smaller id) sends `tcp-offer'.
Emacs answers with its listener's address, the Python peer dials it
with TLS 1.3 (Python's ssl), and the link carries the messages."
  (aiortc-test--link-and-exchange "smaller" 'emacs nil t))

(ert-deftest aiortc::a-python-peer-without-webrtc-answers-a-tcp-offer ()
  "Without WebRTC, Emacs offers TCP with its address; the Python peer dials."
  (aiortc-test--link-and-exchange "larger" 'emacs nil t))

(ert-deftest aiortc::events-of-another-signer-or-topic-are-not-carried ()
  "Events of another signer or for another topic are dropped from a link.
Over an up link the Python peer sends a message signed by another key
and one for another peer's topic: both are dropped as `link-foreign',
and the link stays up."
  (aiortc-test--link-and-exchange "larger" 'emacs t))

(ert-deftest aiortc::an-untrusted-python-peer-gets-no-link ()
  "Under `allowlist', an untrusted aiortc peer offers: Emacs drops its signals.
Its presence and its signals are dropped as `untrusted', and no answer goes back."
  (aiortc-test--require)
  (aiortc-test--with-emacs-peer
    (let* ((me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (python (aiortc-test--start me "smaller" "--initiate"))
           (py-id (process-get python 'peer-id))
           (dropped nil)
           (meta-log-federation-dropped-functions
            (list (lambda (reason message peer)
                    (when (and (equal peer py-id) (equal reason "untrusted"))
                      (push message dropped))))))
      (process-send-string python "go\n")
      (should (meta-log-federation-wait-until
               (lambda () (aiortc-test--line python "ONLINE")) 20))
      ;; Its presence, its announcement, its offer and its end-of-candidates are refused.
      (should (meta-log-federation-wait-until (lambda () (= (length dropped) 4)) 20))
      (should-not (meta-log-federation-peer py-id))
      (should-not (direct-test--link py-id))
      (should (= 0 (alist-get 'links-up (meta-log-federation-direct-counters))))
      (should (= 0 (aiortc-test--count python "SIGNAL")))
      (let ((report (aiortc-test--quit python)))
	(should (equal '((ok . 0) (bad . 0)) (alist-get 'hellos report)))))))

(ert-deftest aiortc::a-hello-naming-another-certificate-carries-no-message ()
  "The Python answerer's hello names a fingerprint its DTLS did not present.
Emacs closes the link and counts a bad hello; the 20 messages the
Python peer sends right after that hello are never accepted."
  (aiortc-test--bad-hello "larger"))

(ert-deftest aiortc::a-bad-hello-from-the-offerer-carries-no-message-either ()
  "As the offerer, the Python peer sends a hello naming another certificate."
  (aiortc-test--bad-hello "smaller"))

(defun aiortc-test--bad-hello (order)
  "A Python peer whose id is ORDER than ours sends a wrong hello.
Check that the link never comes up and that nothing passes."
  (aiortc-test--require)
  (aiortc-test--with-emacs-peer
    (let* ((me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (python (aiortc-test--start me order "--hello" "wrong-fingerprint"))
           (py-id (process-get python 'peer-id))
           (downs nil) (ups nil) (received nil)
           (meta-log-federation-link-up-functions
            (list (lambda (peer path) (push (cons peer path) ups))))
           (meta-log-federation-link-down-functions
            (list (lambda (peer reason) (push (cons peer reason) downs))))
           (meta-log-federation-peer-message-functions
            (list (lambda (from text) (push (cons from text) received)))))
      (meta-log-federation-trust-peer py-id)
      (process-send-string python "go\n")
      (should (meta-log-federation-wait-until
               (lambda () (eq (meta-log-federation-test-status py-id) 'online)) 20))
      (meta-log-federation-connect-to-peer py-id)
      (should (meta-log-federation-wait-until
               (lambda () (> (or (alist-get 'bad-hello (meta-log-federation-direct-counters)) 0)
                             0))
               40))
      (should (meta-log-federation-wait-until (lambda () (assoc py-id downs)) 10))
      (should (string-search "hello" (cdr (assoc py-id downs))))
      ;; The Python side did send its messages on the channel, after the hello.
      (should (meta-log-federation-wait-until
               (lambda () (aiortc-test--line python "SENT \\([0-9]+\\)")) 10))
      (should (= 20 (string-to-number (aiortc-test--line python "SENT \\([0-9]+\\)"))))
      (should-not (assoc py-id ups))
      (should-not (eq (plist-get (direct-test--link py-id) :state) 'up))
      (should (= 0 (alist-get 'received (meta-log-federation-direct-counters))))
      (should-not (cl-find py-id received :key #'car :test #'equal))
      ;; The Python peer is still a trusted peer: the broker carries our messages.
      (meta-log-federation-send-peer-message py-id "through-the-broker")
      (should (meta-log-federation-wait-until
               (lambda () (aiortc-test--line python "BROKER through-the-broker")) 20))
      (aiortc-test--quit python))))

(ert-deftest aiortc::the-python-peers-protocol-passes-the-published-vectors ()
  "The Python peer's crypto and events agree with published data.
tests/interop/self_test.py checks mlf_protocol.py against the official
NIP-44 v2 vectors and the example events of docs/PROTOCOL.md section
13, so a link test that fails is not the Python side's crypto."
  (unless (and (executable-find "python3")
               (zerop (call-process "python3" nil nil nil "-c"
                                    "import coincurve, cryptography")))
    (ert-skip "python3 with coincurve and cryptography is missing (pip install coincurve cryptography)"))
  (let ((root (expand-file-name "../../" (file-name-directory aiortc-test--script))))
    (with-temp-buffer
      (let ((status (call-process "python3" nil t nil "-B"
                                  (expand-file-name "tests/interop/self_test.py" root)
                                  (expand-file-name "src/identity/testdata/nip44_vectors.json"
                                                    root)
                                  (expand-file-name "docs/PROTOCOL.md" root))))
        ;; On a failure ert shows the output, which names the first check that failed.
        (should (string-match-p "\\`OK [0-9]+ checks\n\\'" (buffer-string)))
        (should (= 0 status))))))

(provide 'meta-log-federation-aiortc-test)
;;; meta-log-federation-aiortc-test.el ends here
