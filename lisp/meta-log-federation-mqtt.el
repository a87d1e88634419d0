;;; meta-log-federation-mqtt.el --- MQTT from Elisp, on the native runtime  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; One MQTT connection per Emacs, owned by the module's background
;; runtime.  Every function here returns at once; the outcome arrives as
;; events: messages reach the handlers of each matching subscription,
;; connection changes run the hooks below.  The client reconnects by
;; itself with backoff, re-subscribes, and sends messages queued while
;; the broker was away once the subscriptions are back.

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-events)

(declare-function meta-log-federation--mqtt-connect "meta-log-federation-module")
(declare-function meta-log-federation--mqtt-publish "meta-log-federation-module")
(declare-function meta-log-federation--mqtt-subscribe "meta-log-federation-module")
(declare-function meta-log-federation--mqtt-unsubscribe "meta-log-federation-module")
(declare-function meta-log-federation--mqtt-disconnect "meta-log-federation-module")
(declare-function meta-log-federation-mqtt-connected-p "meta-log-federation-module")

(defcustom meta-log-federation-mqtt-queue-limit 10000
  "Most messages that may wait unsent or unacknowledged.
Beyond it `meta-log-federation-mqtt-publish' signals
`meta-log-federation-queue-full' rather than drop anything."
  :type 'natnum
  :group 'meta-log-federation)

(defcustom meta-log-federation-mqtt-max-reconnect-delay 5
  "Longest wait, in seconds, between two reconnect attempts."
  :type 'number
  :group 'meta-log-federation)

(defcustom meta-log-federation-mqtt-keep-alive 30
  "Seconds between keep-alive pings; also how soon the broker notices a dead peer."
  :type 'natnum
  :group 'meta-log-federation)

(defcustom meta-log-federation-mqtt-ca-file nil
  "PEM file of CA certificates to trust for mqtts:// and wss:// brokers.
Nil means the system's root certificates."
  :type '(choice (const :tag "System roots" nil) file)
  :group 'meta-log-federation)

(defvar meta-log-federation-mqtt-connected-hook nil
  "Normal hook run each time the MQTT connection comes up, reconnects included.")

(defvar meta-log-federation-mqtt-disconnected-hook nil
  "Hook run with one argument, the reason, when the MQTT connection goes down.
It runs both when the broker goes away (the client then reconnects by
itself) and after `meta-log-federation-mqtt-disconnect'.")

(defvar meta-log-federation-error-functions nil
  "Functions called with (CONTEXT MESSAGE) for background errors.
CONTEXT is a string such as \"connect\" or \"subscribe\".")

(defvar meta-log-federation-mqtt-broker nil
  "Broker the current connection was made to (password hidden), or nil.")

(defvar meta-log-federation-mqtt-last-error nil
  "The last background MQTT error, as a string.")

(defvar meta-log-federation--handlers (make-hash-table)
  "Subscription id -> list of handler functions.")

(defvar meta-log-federation--filter-ids (make-hash-table :test #'equal)
  "Topic filter -> subscription id.")

(defconst meta-log-federation--connect-keywords
  '(:client-id :keep-alive :clean-session :will-topic :will-payload :will-qos
    :will-retain :ca-file :queue-limit :max-packet-size :max-reconnect-delay
    :flush-timeout :federation-will :federation-inbound :subscribe)
  "Keywords that `meta-log-federation-mqtt-connect' accepts.")

(defun meta-log-federation-mqtt-connect (url &rest options)
  "Connect to the MQTT broker at URL; return at once.
URL is mqtt://[user[:password]@]host[:port], mqtts://... (TLS),
ws://[user[:password]@]host[:port][/path] (MQTT over WebSockets, for
networks that let only HTTP(S) out) or wss://... (WebSockets over
TLS); a malformed one signals `meta-log-federation-bad-url' saying
what is wrong (see `meta-log-federation--broker-url-parts').  OPTIONS are
keywords and values:
  :client-id STRING      (default: unique per Emacs process)
  :keep-alive SECONDS    (default `meta-log-federation-mqtt-keep-alive')
  :clean-session BOOL    (default t)
  :will-topic TOPIC, :will-payload STRING, :will-qos 0-2, :will-retain BOOL
  :ca-file FILE          (for mqtts:// and wss://, default
                         `meta-log-federation-mqtt-ca-file')
  :queue-limit N         (default `meta-log-federation-mqtt-queue-limit')
  :max-packet-size BYTES (default 1 MiB)
  :max-reconnect-delay SECONDS, :flush-timeout SECONDS
  :subscribe ((FILTER QOS) ...)  filters subscribed before the first
                         connection, so that what a persistent session
                         (:clean-session nil) queued finds them; give
                         them handlers with `meta-log-federation-mqtt-subscribe'
                         right after this call
`meta-log-federation-mqtt-connected-hook' runs when the connection is up."
  (unless (stringp url)
    (signal 'wrong-type-argument (list 'stringp url)))
  (when (cl-oddp (length options))
    (error "Options must be keyword/value pairs, got %S" options))
  (cl-loop for (key _value) on options by #'cddr
           unless (memq key meta-log-federation--connect-keywords)
           do (error "Unknown option %S; known options: %S"
                     key meta-log-federation--connect-keywords))
  (let ((plist (append options
                       (list :keep-alive meta-log-federation-mqtt-keep-alive
                             :queue-limit meta-log-federation-mqtt-queue-limit
                             :max-reconnect-delay meta-log-federation-mqtt-max-reconnect-delay
                             :ca-file meta-log-federation-mqtt-ca-file))))
    (meta-log-federation--ensure-wakeup)
    (meta-log-federation--mqtt-connect url plist)
    t))

(defun meta-log-federation-mqtt-publish (topic payload &optional qos retain)
  "Publish PAYLOAD to TOPIC with QOS (0, 1 or 2; default 0), retained if RETAIN.
PAYLOAD is a string: a multibyte string is sent as UTF-8, a unibyte
string as its raw bytes.  Return at once.  While the broker is
unreachable, messages wait in a bounded queue and go out after the
reconnect, once the subscriptions are restored; when the queue is full
this signals `meta-log-federation-queue-full'.  A topic with wildcards,
an empty one or one over 65535 bytes signals
`meta-log-federation-bad-topic'.  Without a connection this signals
`meta-log-federation-not-connected'."
  (meta-log-federation--mqtt-publish topic payload qos retain))

(defun meta-log-federation-mqtt-subscribe (filter handler &optional qos)
  "Subscribe to FILTER and call HANDLER for every matching message.
FILTER may use the wildcards + and #.  HANDLER is called on the main
thread as (funcall HANDLER TOPIC PAYLOAD); PAYLOAD is a multibyte
string for UTF-8 messages and a unibyte string otherwise.  Several
handlers, on the same or overlapping filters, all run.  QOS is 0 (the
default), 1 or 2.  The subscription is restored after every reconnect.
Return the subscription id."
  (let ((id (meta-log-federation--mqtt-subscribe filter (or qos 0))))
    (puthash filter id meta-log-federation--filter-ids)
    (let ((handlers (gethash id meta-log-federation--handlers)))
      (unless (memq handler handlers)
        (puthash id (append handlers (list handler)) meta-log-federation--handlers)))
    id))

(defun meta-log-federation-mqtt-unsubscribe (filter)
  "Unsubscribe from FILTER and forget its handlers.
Return non-nil if there was such a subscription."
  (let ((id (gethash filter meta-log-federation--filter-ids)))
    (when id
      (remhash id meta-log-federation--handlers)
      (remhash filter meta-log-federation--filter-ids))
    (meta-log-federation--mqtt-unsubscribe filter)))

(defun meta-log-federation-mqtt-disconnect ()
  "Disconnect cleanly from the broker; return at once.
Queued QoS 1/2 messages are given a short time to be acknowledged;
then the connection and its background runtime stop, and
`meta-log-federation-mqtt-disconnected-hook' runs.  Subscriptions and
their handlers are forgotten.  Return non-nil if there was a connection."
  (meta-log-federation--forget-subscriptions)
  (meta-log-federation--mqtt-disconnect))

(defun meta-log-federation--forget-subscriptions ()
  "Forget every subscription's handlers (they die with the connection)."
  (clrhash meta-log-federation--handlers)
  (clrhash meta-log-federation--filter-ids))

(defun meta-log-federation--handle-message (event)
  "Run the handlers of a message EVENT [message TOPIC PAYLOAD RETAIN IDS].
IDS is a subscription id, or a vector of them."
  (let ((topic (aref event 1))
        (payload (aref event 2)))
    (let ((ids (aref event 4)))
      (if (integerp ids)
          (meta-log-federation--run-handlers ids topic payload)
        (cl-loop for id across ids
                 do (meta-log-federation--run-handlers id topic payload))))))

(defun meta-log-federation--run-handlers (id topic payload)
  "Call the handlers of subscription ID with TOPIC and PAYLOAD."
  (dolist (handler (gethash id meta-log-federation--handlers))
    (meta-log-federation--safe-funcall handler topic topic payload)))

(defun meta-log-federation--handle-connected (event)
  "Note that the connection in EVENT [connected BROKER RECONNECT] is up."
  (setq meta-log-federation-mqtt-broker (aref event 1))
  (meta-log-federation--log "%s %s"
           (if (aref event 2) "reconnected to" "connected to") (aref event 1))
  (meta-log-federation--run-hook-safely 'meta-log-federation-mqtt-connected-hook))

(defun meta-log-federation--handle-disconnected (event)
  "Report EVENT [disconnected REASON WILL-RETRY] and run the hook."
  (let ((reason (aref event 1)))
    (meta-log-federation--log "disconnected: %s%s"
             reason (if (aref event 2) " (reconnecting)" ""))
    (unless (aref event 2)
      (setq meta-log-federation-mqtt-broker nil))
    (meta-log-federation--run-hook-safely
     'meta-log-federation-mqtt-disconnected-hook reason)))

(defun meta-log-federation--handle-error (event)
  "Report a background error EVENT [error CONTEXT MESSAGE]."
  (setq meta-log-federation-mqtt-last-error (aref event 2))
  (meta-log-federation--log "%s: %s" (aref event 1) (aref event 2))
  (meta-log-federation--run-hook-safely
   'meta-log-federation-error-functions (aref event 1) (aref event 2)))

(meta-log-federation--on-event 'message #'meta-log-federation--handle-message)
(meta-log-federation--on-event 'connected #'meta-log-federation--handle-connected)
(meta-log-federation--on-event 'disconnected #'meta-log-federation--handle-disconnected)
(meta-log-federation--on-event 'error #'meta-log-federation--handle-error)

(provide 'meta-log-federation-mqtt)
;;; meta-log-federation-mqtt.el ends here
