;;; mqtt-bench.el --- MQTT figures of `make bench'  -*- lexical-binding: t; -*-

;;; Commentary:

;; emacs --batch -Q -L lisp -L bench -l bench/mqtt-bench.el PORT [BARE-QOS0-RATE]
;; Every figure is a round trip, publisher to broker to subscriber, on
;; the broker at 127.0.0.1:PORT, timed from the first publish until the
;; last message is received, and divides the messages received:
;; - this Emacs publishes 10,000 messages of 200 bytes and receives them
;;   back in an Elisp handler, on one connection, at QoS 0 and QoS 1;
;; - the prototype's way: one mosquitto_pub process per message, the
;;   messages received by the same Elisp handler;
;; - BARE-QOS0-RATE, when given, is the same round trip by one bare Rust
;;   client of our transport publishing to itself (examples/mqtt_bench.rs,
;;   "one client"), the ceiling Emacs is compared with.
;; It also prints the longest single call into the module.

;;; Code:

(require 'meta-log-federation)
(require 'meta-log-federation-bench-target)

(defvar mlf-bench-port (string-to-number (pop command-line-args-left)))
(defvar mlf-bench-bare (let ((a (pop command-line-args-left))) (and a (string-to-number a))))
(defvar mlf-bench-n 10000)
(defvar mlf-bench-received 0)
(defvar meta-log-federation-verbose)
(setq meta-log-federation-verbose nil)

(defun mlf-bench-handler (_topic _payload)
  "Count a message."
  (setq mlf-bench-received (1+ mlf-bench-received)))

(defun mlf-bench-subscribe (topic qos)
  "Subscribe the counting handler to TOPIC at QOS; return once it is active."
  (meta-log-federation-mqtt-subscribe topic #'mlf-bench-handler qos)
  (setq mlf-bench-received 0)
  (while (zerop mlf-bench-received)
    (meta-log-federation-mqtt-publish topic "probe" 1)
    (meta-log-federation-wait-until (lambda () (> mlf-bench-received 0)) 0.2))
  (meta-log-federation-wait-until #'ignore 0.1)
  (setq mlf-bench-received 0))

(defun mlf-bench-round-trip (qos)
  "Publish and receive `mlf-bench-n' messages at QOS; return received/s."
  (let ((topic (format "bench/elisp/%d" qos))
        (payload (make-string 200 ?x)))
    (mlf-bench-subscribe topic qos)
    (meta-log-federation--reset-max-call)
    (let ((start (float-time)))
      (dotimes (_ mlf-bench-n)
        (meta-log-federation-mqtt-publish topic payload qos))
      (meta-log-federation-wait-until (lambda () (>= mlf-bench-received mlf-bench-n)) 60)
      (let* ((secs (- (float-time) start))
             (rate (/ mlf-bench-received secs))
             (stats (meta-log-federation-stats)))
        (princ (format "mqtt: Elisp round trip QoS %d (one connection publishes and receives): %d received of %d sent, 200 B, in %.3f s = %.0f received/s\n"
                       qos mlf-bench-received mlf-bench-n secs rate))
        (princ (format "mqtt: longest module call during it: %d us CPU %s, %d us wall-clock (%s)\n"
                       (plist-get stats :max-call-cpu-us)
                       (meta-log-federation-bench-target "<= 1 ms CPU"
                                                         (<= (plist-get stats :max-call-cpu-us) 1000))
                       (plist-get stats :max-call-us)
                       (plist-get stats :max-call-function)))
        (meta-log-federation-mqtt-unsubscribe topic)
        rate))))

(defun mlf-bench-old-way (count)
  "Publish COUNT messages with one mosquitto_pub process each; return received/s.
The messages are received by the same Elisp handler as the round trip's."
  (let ((payload (make-string 200 ?x)))
    (mlf-bench-subscribe "bench/old" 0)
    (let ((start (float-time)))
      (dotimes (_ count)
        (call-process "mosquitto_pub" nil nil nil "-h" "127.0.0.1"
                      "-p" (number-to-string mlf-bench-port) "-t" "bench/old" "-m" payload))
      (meta-log-federation-wait-until (lambda () (>= mlf-bench-received count)) 30)
      (let* ((secs (- (float-time) start))
             (rate (/ mlf-bench-received secs)))
        (princ (format "mqtt: old way round trip (one mosquitto_pub process per message, received by Elisp): %d received of %d sent in %.3f s = %.0f received/s\n"
                       mlf-bench-received count secs rate))
        rate))))

(meta-log-federation-mqtt-connect (format "mqtt://127.0.0.1:%d" mlf-bench-port)
                                  :queue-limit 50000)
(unless (meta-log-federation-wait-until #'meta-log-federation-mqtt-connected-p 10)
  (error "Cannot connect to the bench broker on port %d" mlf-bench-port))
(let* ((q0 (mlf-bench-round-trip 0))
       (q1 (mlf-bench-round-trip 1))
       (old (mlf-bench-old-way 300)))
  (princ (format "mqtt: round trip QoS 0, Elisp vs old way: %.0fx %s\n" (/ q0 old)
                 (meta-log-federation-bench-target ">= 100x" (>= (/ q0 old) 100))))
  (princ (format "mqtt: round trip QoS 1, Elisp vs old way: %.0fx (no target)\n" (/ q1 old)))
  (when mlf-bench-bare
    (princ (format "mqtt: round trip QoS 0 on one connection, Elisp vs bare Rust: %.0f%% %s\n"
                   (* 100 (/ q0 mlf-bench-bare))
                   (meta-log-federation-bench-target ">= 50%" (>= (/ q0 mlf-bench-bare) 0.5))))))
(meta-log-federation-shutdown)

;;; mqtt-bench.el ends here
