;;; demo-peer.el --- One peer of `make demo'  -*- lexical-binding: t; -*-

;;; Commentary:

;; emacs --batch -Q -L lisp -l examples/demo-peer.el NAME BROKER-URL OTHER-NAME
;; Makes a fresh identity, connects, announces itself, greets the other
;; peer with a signed event, verifies and answers its greeting, and prints
;; what happens as it happens.  Exits when both greetings were
;; exchanged or after 20 seconds.

;;; Code:

(require 'meta-log-federation)

(defvar demo-name (pop command-line-args-left))
(defvar demo-url (pop command-line-args-left))
(defvar demo-other (pop command-line-args-left))
(defvar demo-got-greeting nil)
(defvar demo-got-answer nil)
(defvar demo-identity
  (meta-log-federation-identity-from-mnemonic (meta-log-federation-mnemonic-generate))
  "This peer's identity, new for each run of the demo.")
(setq meta-log-federation-verbose nil)

(defun demo-say (format-string &rest args)
  "Print FORMAT-STRING with ARGS, prefixed by the peer's name."
  (princ (format "[%s] %s\n" demo-name (apply #'format format-string args))))

(defun demo-signed (text)
  "Return TEXT as a signed event (JSON) from this peer."
  (meta-log-federation-sign-event demo-identity 1 text))

(defun demo-on-message (topic payload)
  "Handle PAYLOAD, a signed event, received on TOPIC."
  (let* ((event (meta-log-federation-verify-event payload))
         (text (plist-get event :content)))
    (if (not event)
        (demo-say "dropped a message on %s: %S" topic (meta-log-federation-verify-event-reason))
      (demo-say "received on %s, signature valid, from peer %s...: %s"
                topic (substring (plist-get event :pubkey) 0 12) text)
      (cond
       ((string-prefix-p "hello" text)
        (setq demo-got-greeting t)
        (meta-log-federation-mqtt-publish (format "demo/%s" demo-other)
                                          (demo-signed (format "welcome from %s" demo-name)) 1))
       ((string-prefix-p "welcome" text)
        (setq demo-got-answer t))))))

(add-hook 'meta-log-federation-mqtt-connected-hook
          (lambda () (demo-say "connected to %s" meta-log-federation-mqtt-broker)))
(demo-say "module %s, peer id %s" (meta-log-federation-version)
          (meta-log-federation-identity-peer-id demo-identity))
(demo-say "connecting to %s" demo-url)
(meta-log-federation-mqtt-connect demo-url :client-id demo-name
                                  :will-topic (format "demo/presence/%s" demo-name)
                                  :will-payload "gone" :will-retain t)
(meta-log-federation-wait-until #'meta-log-federation-mqtt-connected-p 10)
(meta-log-federation-mqtt-subscribe (format "demo/%s" demo-name) #'demo-on-message 1)
(meta-log-federation-mqtt-subscribe
 "demo/presence/+"
 (lambda (topic payload)
   (unless (equal topic (format "demo/presence/%s" demo-name))
     (demo-say "presence: %s is %s" (file-name-nondirectory topic) payload)))
 1)
(meta-log-federation-mqtt-publish (format "demo/presence/%s" demo-name) "online" 1 t)
;; Wait until the other peer is online (its retained presence says so), then greet it.
(let ((other-online nil))
  (meta-log-federation-mqtt-subscribe (format "demo/presence/%s" demo-other)
                                      (lambda (_topic payload)
                                        (setq other-online (equal payload "online")))
                                      1)
  (meta-log-federation-wait-until (lambda () other-online) 15))
(demo-say "greeting %s" demo-other)
(meta-log-federation-mqtt-publish (format "demo/%s" demo-other)
                                  (demo-signed (format "hello from %s" demo-name)) 1)
(if (meta-log-federation-wait-until (lambda () (and demo-got-greeting demo-got-answer)) 20)
    (demo-say "done: greeted and was greeted")
  (demo-say "timed out"))
;; Stay a moment so the other side's answer is acknowledged, then leave cleanly.
(meta-log-federation-wait-until (lambda () nil) 0.5)
(meta-log-federation-mqtt-publish (format "demo/presence/%s" demo-name) "offline" 1 t)
(meta-log-federation-shutdown)
(kill-emacs (if (and demo-got-greeting demo-got-answer) 0 1))

;;; demo-peer.el ends here
